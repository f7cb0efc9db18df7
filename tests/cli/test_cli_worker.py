"""``tidings run module:bus``: a worker process that drains and exits on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import Result

from tidings import Bus, Message

Invoke = Callable[..., Result]

APP = """
import asyncio
import os

import tidings

bus = tidings.Bus(os.environ.get("WORKER_URL", "memory://"))


@bus.subscribe("jobs.run", group="jobs", concurrency=4)
async def run_job(message: tidings.Message) -> None:
    print("started", message.key, flush=True)
    if message.key == "slow":
        await asyncio.sleep(0.5)  # the job is still running when the signal comes
    elif message.key == "stuck":
        await asyncio.Event().wait()
    print("finished", message.key, flush=True)


def make_bus() -> tidings.Bus:
    return bus


def make_nothing() -> int:
    return 42
"""


@pytest.fixture
def app_module(tmp_path: Path) -> str:
    """The name of a module in ``tmp_path`` (the workers' current directory) defining a bus."""
    name = f"worker_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    return name


@dataclass
class Worker:
    process: asyncio.subprocess.Process
    stderr_seen: list[str]

    async def line(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(30):
            return (await self.process.stdout.readline()).decode().strip()

    async def stderr_line(self) -> str:
        assert self.process.stderr is not None
        async with asyncio.timeout(30):
            line = (await self.process.stderr.readline()).decode()
        self.stderr_seen.append(line)
        return line

    async def finish(self) -> tuple[int, str]:
        """The exit status and the rest of stderr."""
        async with asyncio.timeout(30):
            _, err = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, "".join(self.stderr_seen) + err.decode()


@asynccontextmanager
async def worker(cwd: Path, *args: str, url: str = "memory://") -> AsyncIterator[Worker]:
    """A ``tidings run`` process, yielded once it reported that it runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidings.cli", "run", *args,
        cwd=cwd, env={**os.environ, "WORKER_URL": url, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not seen or "worker running" not in seen[-1]:
                line = (await process.stderr.readline()).decode()
                assert line, f"the worker exited early: {''.join(seen)}"
                seen.append(line)
        yield Worker(process, seen)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def publish(url: str, *keys: str) -> None:
    async with Bus(url) as bus:
        for key in keys:
            await bus.publish(Message("jobs.run", b"{}", key=key))


async def test_worker_handles_what_others_publish_and_stops_on_sigterm(
    tmp_path: Path, app_module: str, sqlite_url: str
) -> None:
    async with worker(tmp_path, f"{app_module}:bus", url=sqlite_url) as running:
        await publish(sqlite_url, "a")
        assert await running.line() == "started a"
        assert await running.line() == "finished a"
        running.process.send_signal(signal.SIGTERM)

        status, stderr = await running.finish()

    assert status == 0, stderr
    assert "drained and stopped" in stderr


async def test_worker_lets_jobs_in_flight_finish_on_sigint(
    tmp_path: Path, app_module: str, sqlite_url: str
) -> None:
    async with worker(tmp_path, f"{app_module}:bus", url=sqlite_url) as running:
        await publish(sqlite_url, "slow")
        assert await running.line() == "started slow"
        running.process.send_signal(signal.SIGINT)

        assert await running.line() == "finished slow"
        status, stderr = await running.finish()

    assert status == 0, stderr


async def test_a_second_signal_cuts_the_drain_short(
    tmp_path: Path, app_module: str, sqlite_url: str
) -> None:
    async with worker(tmp_path, f"{app_module}:bus", url=sqlite_url) as running:
        await publish(sqlite_url, "stuck")
        assert await running.line() == "started stuck"
        running.process.send_signal(signal.SIGTERM)
        assert "draining" in await running.stderr_line()
        running.process.send_signal(signal.SIGTERM)

        status, stderr = await running.finish()

    assert status == 1
    assert "stopped before the drain finished" in stderr


async def test_worker_takes_a_factory_and_a_concurrency(tmp_path: Path, app_module: str) -> None:
    async with worker(tmp_path, f"{app_module}:make_bus", "--concurrency", "9") as running:
        table = "".join(running.stderr_seen)
        running.process.send_signal(signal.SIGTERM)
        status, stderr = await running.finish()

    assert status == 0, stderr
    row = next(line for line in table.splitlines() if "jobs.run" in line)
    assert "jobs" in row
    assert "run_job" in row
    assert "9" in row


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("{module}", "expected module:attribute"),
        ("no_such_module_here:bus", "no module named"),
        ("{module}:missing", "has no 'missing'"),
        ("{module}:make_nothing", "not a Bus"),
    ],
)
def test_worker_refuses_what_is_not_a_bus(
    cli: Invoke,
    tmp_path: Path,
    app_module: str,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    reason: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the worker puts the directory first

    result = cli("run", spec.format(module=app_module))

    assert result.exit_code == 2
    assert reason in " ".join(result.output.split())


FAILING_APP = """
import tidings
from tidings.testing.faults import FaultyTransport, Times
from tidings.transports.memory import MemoryTransport

bus = tidings.Bus(
    FaultyTransport(MemoryTransport(), drop_fetches=Times(1_000)),
    restart=tidings.Retry(max_attempts=3, initial_delay=0.01),
)
bus.subscribe("jobs.run", lambda message: None, group="jobs")
"""


async def test_a_consumer_that_fails_for_good_ends_the_worker(tmp_path: Path) -> None:
    name = f"failing_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FAILING_APP))
    async with worker(tmp_path, f"{name}:bus") as running:
        status, stderr = await running.finish()

    assert status == 2, stderr
    assert "consumer" in stderr
    assert "ServiceUnavailable" in stderr
