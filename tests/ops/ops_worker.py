"""The ops tests' helpers: a ``tidings run --http`` worker process on the signup example."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

import tidings
from tidings.examples.signup import UserSignedUp

ROOT = Path(__file__).resolve().parents[2]
APP = "tidings.examples.signup.app:create_bus"


@dataclass
class Worker:
    process: asyncio.subprocess.Process
    url: str
    """Where the endpoints are: ``http://127.0.0.1:PORT``."""
    news: list[str]
    """The lines it wrote on stderr until it said where its endpoints are."""

    async def get(self, path: str) -> tuple[int, str]:
        """The status and body of ``GET path``."""
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, await response.text()

    async def get_json(self, path: str) -> tuple[int, Any]:
        status, body = await self.get(path)
        return status, json.loads(body)

    async def stop(self) -> int:
        """SIGTERM; the exit status once it drained."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode


@asynccontextmanager
async def worker(
    cwd: Path, url: str, *args: str, env: dict[str, str] | None = None, app: str = APP
) -> AsyncIterator[Worker]:
    """``tidings run`` on ``app`` (the signup example) at ``url`` with ``--http 127.0.0.1:0``
    (and ``args``), yielded once it reported where its endpoints are."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidings.cli", "--log-format", "json", "--log-level", "info",
        "run", app, "--http", "127.0.0.1:0", *args,
        cwd=cwd, env={**os.environ, "TIDINGS_URL": url, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode()
                assert line, f"the worker exited early: {''.join(seen)}"
                seen.append(line)
                if found := re.search(r"endpoints at (http://[^;]+);", line):
                    break
        yield Worker(process, found.group(1), seen)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def signups(count: int, *, invalid: int = 0) -> list[UserSignedUp]:
    """``count`` signups with good addresses, then ``invalid`` without an ``@``."""
    now = datetime.now(UTC)
    good = [UserSignedUp(n, f"user{n}@example.org", f"User {n}", now) for n in range(count)]
    bad = [UserSignedUp(1000 + n, "nobody", "Nobody", now) for n in range(invalid)]
    return good + bad


async def publish(url: str, events: list[UserSignedUp]) -> None:
    async with tidings.Bus(url) as bus:
        for event in events:
            await bus.publish(event)


Samples = dict[str, list[tuple[dict[str, str], float]]]


async def samples(running: Worker) -> Samples:
    """Every sample /metrics serves, by sample name."""
    status, body = await running.get("/metrics")
    assert status == 200
    found: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


async def until_metrics(running: Worker, done: Callable[[Samples], bool], what: str) -> Samples:
    """/metrics once ``done`` holds for it; fails naming ``what`` after 30 s."""
    try:
        async with asyncio.timeout(30):
            while True:
                if done(found := await samples(running)):
                    break
                await asyncio.sleep(0.05)  # polling the endpoint: nothing else tells
    except TimeoutError:
        raise AssertionError(f"/metrics never showed {what}") from None
    return found


def total(found: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for have, value in found.get(name, [])
        if all(have.get(k) == v for k, v in labels.items())
    )
