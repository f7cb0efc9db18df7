"""Crash test for persistent transports: kill a consuming worker with SIGKILL and restart it.

:func:`crash_test` publishes ``messages`` messages, then runs a worker process
(``python -m tidings.testing.crash URL TOPIC GROUP EFFECTS``) that handles them: for each message it
writes its side effect (a row keyed by message id, ``INSERT OR IGNORE``: an idempotent handler)
and counts the attempt, in one SQLite transaction per batch, and only then acks. The worker is
killed with SIGKILL at random moments ``kills`` times and started again; the last one runs until
every message was handled. The report says how many were handled at least once (must be all)
and how often messages were handled again after a kill (at-least-once, never lost).

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

from tidings.message import Message
from tidings.testing.receiver import Receiver, prime, waiting
from tidings.transports import from_url

__all__ = ["CrashReport", "crash_test"]


@dataclass(frozen=True)
class CrashReport:
    messages: int
    """How many were published."""
    distinct: int
    """How many distinct messages have their side effect: all of them, when nothing was lost."""
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
    return CrashReport(messages, _distinct(effects), attempts, kills)


async def _publish(url: str, topic: str, group: str, count: int) -> None:
    transport = from_url(url)
    await transport.start()
    try:
        if not transport.features.replays_history:
            # The group must exist before publishing where new groups start at the end.
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
            (count,) = db.execute("SELECT count(*) FROM effects").fetchone()
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
    db = sqlite3.connect(effects, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS effects (id TEXT PRIMARY KEY)")
    db.execute("CREATE TABLE IF NOT EXISTS attempts (n INTEGER PRIMARY KEY, id TEXT NOT NULL)")
    (distinct,) = db.execute("SELECT count(*) FROM effects").fetchone()
    transport = from_url(url)
    await transport.start()
    print(f"progress {distinct}", flush=True)
    async for batch in transport.subscribe(topic, group=group, prefetch=500):
        ids = [(delivery.message.id,) for delivery in batch]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO attempts (id) VALUES (?)", ids)
        before = db.total_changes
        db.executemany("INSERT OR IGNORE INTO effects (id) VALUES (?)", ids)
        distinct += db.total_changes - before
        db.execute("COMMIT")
        for delivery in batch:
            await delivery.ack()
        print(f"progress {distinct}", flush=True)


if __name__ == "__main__":
    asyncio.run(_work(*sys.argv[1:5]))
