"""Crash test for persistent transports: kill a consuming worker with SIGKILL and restart it.

:func:`crash_test` publishes ``messages`` messages, then runs a worker process
(``python -m tidings.testing.crash URL TOPIC GROUP EFFECTS``): a ``Bus`` whose handler writes
its side effect, a row per message id, through the dedupe middleware's SQLite inbox, so the row
and the record of the id commit together; every delivery is counted as an attempt. The worker is
killed with SIGKILL at random moments ``kills`` times and started again; the last one runs until
every message was handled. Every message must have been handled at least once (nothing lost)
and its row must exist exactly once (the dedupe middleware absorbed the redeliveries).

Usage from a test::

    report = await crash_test("sqlite:///…/q.db?lease=2", effects=tmp_path / "effects.db")
    assert report.distinct == report.messages
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tidings.bus import Bus
from tidings.message import Message
from tidings.middleware import Handler
from tidings.middleware.dedupe import SqliteInbox, dedupe, inbox_transaction
from tidings.testing.receiver import PROBE_HEADER, Receiver, prime, waiting
from tidings.transports import from_url

__all__ = ["CrashReport", "crash_test"]


@dataclass(frozen=True)
class CrashReport:
    messages: int
    """How many were published."""
    distinct: int
    """How many distinct messages have their side effect: all of them, when nothing was lost."""
    effects: int
    """How many side-effect rows exist: ``distinct`` when each was written exactly once."""
    attempts: int
    """How many times messages were handled in all (more than ``messages`` after kills)."""
    kills: int


async def crash_test(
    url: str,
    *,
    effects: Path,
    messages: int = 10_000,
    kills: int = 3,
    timeout: float = 120.0,
    seed: int | None = None,
) -> CrashReport:
    """Publish ``messages`` to a new topic at ``url``, then consume them with a worker that is
    killed ``kills`` times at random points; see the module docstring. Raises AssertionError when
    a worker fails or the messages are not all handled within ``timeout`` seconds."""
    rng = random.Random(seed)
    topic, group = f"crash.{uuid.uuid4().hex[:12]}", f"crash-{uuid.uuid4().hex[:8]}"
    await _publish(url, topic, group, messages)
    async with waiting(timeout, f"{messages} messages handled through {kills} kills"):
        for _ in range(kills):
            # Kill somewhere in the middle of what is left, a little further each time.
            done = _distinct(effects)
            target = rng.randint(done + 1, min(done + messages // 4, messages - 1))
            await _run_worker(url, topic, group, effects, until=target)
        await _run_worker(url, topic, group, effects, until=messages)
    with contextlib.closing(sqlite3.connect(effects)) as db:
        (attempts,) = db.execute("SELECT count(*) FROM attempts").fetchone()
        (rows,) = db.execute("SELECT count(*) FROM effects").fetchone()
    report = CrashReport(messages, _distinct(effects), rows, attempts, kills)
    assert report.effects == report.distinct, f"side effects written twice: {report}"
    return report


async def _publish(url: str, topic: str, group: str, count: int) -> None:
    transport = from_url(url)
    await transport.start()
    try:
        # The group must exist before publishing (see prime).
        receiver = Receiver(transport.subscribe(topic, group=group))
        await prime(transport, topic, [receiver])
        await receiver.aclose()
        for start in range(0, count, 500):
            batch = [
                Message("crash.item", b'{"n":%d}' % n, key=f"key-{n % 32}")
                for n in range(start, min(start + 500, count))
            ]
            await transport.publish(topic, batch)
    finally:
        await transport.aclose()


def _distinct(effects: Path) -> int:
    if not effects.exists():
        return 0
    with contextlib.closing(sqlite3.connect(effects)) as db:
        try:
            (count,) = db.execute("SELECT count(DISTINCT id) FROM effects").fetchone()
        except sqlite3.OperationalError:  # no table yet
            return 0
    return int(count)


async def _run_worker(url: str, topic: str, group: str, effects: Path, *, until: int) -> None:
    """Start a worker and SIGKILL it once it reports ``until`` messages handled."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidings.testing.crash", url, topic, group, str(effects),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        while True:
            line = await process.stdout.readline()
            if not line:
                raise AssertionError(f"the worker exited with {await process.wait()}")
            if line.startswith(b"progress ") and int(line.split()[1]) >= until:
                break
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _work(url: str, topic: str, group: str, effects: str) -> None:
    attempts = sqlite3.connect(effects, isolation_level=None)
    attempts.execute("PRAGMA journal_mode=WAL")
    attempts.execute("CREATE TABLE IF NOT EXISTS effects (id TEXT NOT NULL)")  # no key: dupes show
    attempts.execute("CREATE TABLE IF NOT EXISTS attempts (n INTEGER PRIMARY KEY, id TEXT)")
    (handled,) = attempts.execute("SELECT count(DISTINCT id) FROM effects").fetchone()
    inbox = SqliteInbox(effects)

    written: set[str] = set()

    def count_attempt(handler: Handler) -> Handler:
        async def counted(message: Message) -> None:
            attempts.execute("INSERT INTO attempts (id) VALUES (?)", (message.id,))
            await handler(message)

        return counted

    def report_progress(handler: Handler) -> Handler:
        async def reported(message: Message) -> None:
            nonlocal handled
            await handler(message)  # returns once the effect is committed
            if message.id in written:
                written.discard(message.id)
                handled += 1
                print(f"progress {handled}", flush=True)

        return reported

    async def write_effect(message: Message) -> None:
        if PROBE_HEADER in message.headers:  # left in a queue by priming: not one of the count
            return
        inbox_transaction().connection.execute("INSERT INTO effects VALUES (?)", (message.id,))
        written.add(message.id)

    bus = Bus(url)
    bus.subscribe(
        topic,
        write_effect,
        group=group,
        concurrency=8,
        middleware=[count_attempt, report_progress, dedupe(inbox, scope=group)],
    )
    print(f"progress {handled}", flush=True)
    async with bus:
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(_work(*sys.argv[1:5]))
