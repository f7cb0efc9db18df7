"""``tidings run APP --workers N``: a supervisor running N worker processes of one application."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tidings import Bus, Message

APP = """
import os
import sys

import tidings

bus = tidings.Bus(os.environ["WORKER_URL"])


@bus.subscribe("jobs.run", group="jobs", concurrency=4, ordered=True)
async def run_job(message: tidings.Message) -> None:
    # one write per line: workers share the supervisor's stdout, and print's separate writes of
    # its parts interleave with other workers' lines
    sys.stdout.write(f"handled {tidings.worker_id()} {message.key}\\n")
    sys.stdout.flush()
"""


class Supervised:
    """A ``tidings run --workers`` process and what it and its workers wrote."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.handled_by: set[str] = set()
        self.news: list[str] = []
        self._changed = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._read(process.stdout, self.handled_by.add, "handled ")),
            asyncio.create_task(self._read(process.stderr, self.news.append, "")),
        ]

    async def _read(
        self, stream: asyncio.StreamReader | None, keep: Callable[[str], object], prefix: str
    ) -> None:
        assert stream is not None
        async for raw in stream:
            line = raw.decode().strip()
            if line.startswith(prefix):
                keep(line.removeprefix(prefix).split()[0] if prefix else line)
                self._changed.set()

    async def until(self, condition: Callable[[], object], what: str) -> None:
        try:
            async with asyncio.timeout(60):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"timed out waiting for {what}; handled by {sorted(self.handled_by)}: "
                f"{self.news[-20:]}"
            ) from None

    def pid_of(self, number: int) -> int:
        """The pid of worker ``number``, from the latest line saying it runs."""
        pattern = re.compile(rf"worker {number} running on .*\(pid (\d+)\)")
        return int(next(m[1] for line in reversed(self.news) if (m := pattern.search(line))))

    def running(self, number: int) -> int:
        return sum(f"worker {number} running" in line for line in self.news)

    async def finish(self) -> int:
        async with asyncio.timeout(60):
            status = await self.process.wait()
            await asyncio.gather(*self._readers)
        return status


@asynccontextmanager
async def supervised(cwd: Path, app: str, url: str, workers: int) -> AsyncIterator[Supervised]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidings.cli", "run", app, "--workers", str(workers),
        cwd=cwd, env={**os.environ, "WORKER_URL": url, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    run = Supervised(process)
    try:
        yield run
    finally:
        if process.returncode is None:  # the workers live in sessions of their own
            process.terminate()
            await run.finish()


@pytest.fixture
def app_module(tmp_path: Path) -> str:
    name = f"workers_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    return name


async def publish(url: str, count: int) -> None:
    async with Bus(url) as bus:
        for n in range(count):
            await bus.publish(Message("jobs.run", b"{}", key=f"key-{n % 40}"))


async def _keep_publishing(url: str) -> None:
    while True:
        await publish(url, 50)


async def test_workers_share_the_work_are_restarted_and_drain_on_sigterm(
    tmp_path: Path, app_module: str
) -> None:
    url = f"sqlite:///{tmp_path}/bus.db?lease=1"
    async with supervised(tmp_path, f"{app_module}:bus", url, 2) as run:
        await run.until(lambda: run.running(1) and run.running(2), "both workers to run")
        await publish(url, 200)
        await run.until(lambda: run.handled_by == {"1", "2"}, "both workers to handle jobs")

        os.kill(run.pid_of(1), signal.SIGKILL)
        await run.until(lambda: run.running(1) == 2, "worker 1 to be started again")
        assert any("worker 1" in line and "exited with status -9" in line for line in run.news)

        run.process.send_signal(signal.SIGTERM)
        status = await run.finish()

    assert status == 0, run.news
    assert sum("drained and stopped" in line for line in run.news) == 2


async def test_a_worker_knows_its_number(tmp_path: Path, app_module: str) -> None:
    url = f"sqlite:///{tmp_path}/bus.db"
    async with supervised(tmp_path, f"{app_module}:bus", url, 3) as run:
        await run.until(lambda: all(run.running(n) for n in (1, 2, 3)), "three workers to run")
        # a worker shares the keys once it joined its group, at its first fetch: on a busy
        # machine the others may finish a first batch before that, so jobs keep coming
        publishing = asyncio.ensure_future(_keep_publishing(url))
        try:
            await run.until(lambda: run.handled_by == {"1", "2", "3"}, "each worker to handle jobs")
        finally:
            publishing.cancel()
        run.process.send_signal(signal.SIGINT)
        assert await run.finish() == 0, run.news


async def test_workers_drain_when_their_supervisor_is_killed(
    tmp_path: Path, app_module: str
) -> None:
    url = f"sqlite:///{tmp_path}/bus.db"
    async with supervised(tmp_path, f"{app_module}:bus", url, 2) as run:
        await run.until(lambda: run.running(1) and run.running(2), "both workers to run")
        run.process.kill()
        await run.until(
            lambda: sum("drained and stopped" in line for line in run.news) == 2,
            "both workers to drain",
        )
        await run.finish()  # the workers' ends of the pipes closed: they exited
