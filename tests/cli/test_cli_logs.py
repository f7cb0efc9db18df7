"""``tidings --log-format json|text``: log records as JSON lines or text, naming the message
being handled."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from typer.testing import Result

from tidings import Bus, Message

Invoke = Callable[..., Result]

APP = """
import logging
import os

import tidings

bus = tidings.Bus(os.environ["WORKER_URL"])


@bus.subscribe("jobs.run", group="jobs", name="job")
def run_job(message: tidings.Message) -> None:
    logging.getLogger("jobs").warning("running %s", message.key)
"""


@asynccontextmanager
async def worker(cwd: Path, url: str, *options: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``tidings OPTIONS run app:bus`` in ``cwd``, once it started (its stderr is read from
    then on by the test)."""
    name = f"logging_app_{uuid.uuid4().hex[:8]}"
    (cwd / f"{name}.py").write_text(textwrap.dedent(APP))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidings.cli", *options, "run", f"{name}:bus",
        cwd=cwd, env={**os.environ, "WORKER_URL": url, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def line_with(process: asyncio.subprocess.Process, text: str, seen: list[str]) -> str:
    """The next line of stderr holding ``text``; every line read is added to ``seen``."""
    assert process.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stderr.readline()).decode()
            assert line, f"the worker exited: {''.join(seen)}"
            seen.append(line)
            if text in line:
                return line


async def publish(url: str, key: str) -> Message:
    async with Bus(url) as bus:
        return await bus.publish(Message("jobs.run", b"{}", key=key))


async def test_a_json_worker_writes_only_json_lines_naming_the_message(
    tmp_path: Path, sqlite_url: str
) -> None:
    seen: list[str] = []
    options = ("--log-format", "JSON", "--log-level", "info")  # in any case, as levels
    async with worker(tmp_path, sqlite_url, *options) as process:
        await line_with(process, "worker running", seen)
        message = await publish(sqlite_url, "a")
        running = msgspec.json.decode(await line_with(process, "running a", seen))
        process.send_signal(signal.SIGTERM)
        _, rest = await process.communicate()

    assert process.returncode == 0
    records: list[dict[str, Any]] = [
        msgspec.json.decode(line) for line in [*seen, *rest.decode().splitlines(keepends=True)]
    ]
    assert {"level", "logger", "message", "time"} <= running.keys()
    assert (running["logger"], running["level"]) == ("jobs", "WARNING")
    assert running["message_id"] == running["correlation_id"] == message.id
    assert (running["topic"], running["route"], running["group"]) == ("jobs.run", "job", "jobs")
    assert running["attempt"] == 1
    (subscribed,) = (r for r in records if r["message"] == "subscribed")
    assert (subscribed["route"], subscribed["concurrency"]) == ("job", 1)
    assert records[-1]["message"] == "drained and stopped"


async def test_a_text_worker_names_the_message_after_the_record(
    tmp_path: Path, sqlite_url: str
) -> None:
    seen: list[str] = []
    async with worker(tmp_path, sqlite_url) as process:
        await line_with(process, "worker running", seen)
        message = await publish(sqlite_url, "b")
        line = await line_with(process, "running b", seen)

    assert "WARNING" in line
    assert f"[jobs.run job attempt 1 message {message.id}]" in line


def test_an_unknown_log_format_is_refused(cli: Invoke) -> None:
    result = cli("--log-format", "xml", "dlq", "--help")

    assert result.exit_code == 2
    assert "--log-format" in result.output
