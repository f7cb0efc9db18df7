"""The SQLite transport while another connection holds the write lock (a backup, a VACUUM, a
migration) for longer than ``busy_timeout``: consumers wait it out, publishes fail cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings import Bus, Message
from tidings.errors import ServiceUnavailable
from tidings.testing.receiver import opened, waiting
from tidings.transports.sqlite import SqliteTransport

HOLD = 1.0
"""Seconds the other connection keeps the lock: five times the busy_timeout of these tests."""


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another connection holds ``BEGIN EXCLUSIVE`` on ``path`` until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def remaining(path: Path) -> tuple[int, int]:
    """Log rows and pending rows still in the file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        (log,) = db.execute("SELECT count(*) FROM tidings_log").fetchone()
        (pending,) = db.execute("SELECT count(*) FROM tidings_pending").fetchone()
    return int(log), int(pending)


async def test_a_consumer_outlives_a_long_write_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fetches and acks fail as busy while the lock is held; the consumer waits (saying so once),
    then handles and acknowledges everything, and goes on receiving."""
    path = tmp_path / "bus.db"
    url = f"sqlite:///{path}?busy_timeout=0.2&poll=0.05"
    handled: list[int] = []
    release = asyncio.Event()
    changed = asyncio.Condition()

    async def handle(message: Message) -> None:
        if int(message.key or 0) < 5:
            await release.wait()  # acked only while the file is locked
        async with changed:
            handled.append(int(message.key or 0))
            changed.notify_all()

    bus = Bus(url)
    bus.subscribe("work", handle, group="g", concurrency=10)
    async with bus:
        for n in range(5):
            await bus.publish(Message("work", b"{}", {}, str(n)))
        with write_locked(path):
            release.set()
            await asyncio.sleep(HOLD)  # the hold itself; nothing waits on it
        for n in range(5, 10):
            await bus.publish(Message("work", b"{}", {}, str(n)))
        async with waiting(10, "every message handled"), changed:
            await changed.wait_for(lambda: len(handled) == 10)
    assert sorted(handled) == list(range(10))
    assert remaining(path)[1] == 0, "every message was acknowledged"
    said = [r.getMessage() for r in caplog.records if r.name == "tidings.transports"]
    assert len([line for line in said if "is unavailable" in line]) == 1, said
    assert len([line for line in said if "available again" in line]) == 1, said


async def test_a_publish_into_a_locked_file_fails_cleanly(tmp_path: Path) -> None:
    """A publish waits ``busy_timeout`` for the lock, then raises ServiceUnavailable naming the
    file; nothing of it is stored, and the next publish goes through."""
    path = tmp_path / "bus.db"
    async with opened(lambda: SqliteTransport(f"sqlite:///{path}?busy_timeout=0.2")) as transport:
        with write_locked(path), pytest.raises(ServiceUnavailable, match=r"bus\.db.*locked"):
            await transport.publish("t", [Message("t", b"1")])
        await transport.publish("t", [Message("t", b"2")])
    assert remaining(path)[0] == 1


async def test_a_publish_waits_for_a_short_lock(tmp_path: Path) -> None:
    """A lock released within ``busy_timeout`` only delays the publish."""
    path = tmp_path / "bus.db"
    url = f"sqlite:///{path}?busy_timeout=30"
    async with opened(lambda: SqliteTransport(url)) as transport:
        with write_locked(path):
            publish = asyncio.create_task(transport.publish("t", [Message("t", b"1")]))
            await asyncio.sleep(0.2)  # the hold itself
            assert not publish.done()
        await publish
    assert remaining(path)[0] == 1


async def test_a_publish_waiting_for_the_lock_obeys_the_callers_timeout(tmp_path: Path) -> None:
    """However long ``busy_timeout`` is, the caller's own timeout ends the wait; the connection
    is fine afterwards."""
    path = tmp_path / "bus.db"
    async with opened(lambda: SqliteTransport(f"sqlite:///{path}?busy_timeout=60")) as transport:
        with write_locked(path), pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await transport.publish("t", [Message("t", b"1")])
        await transport.publish("t", [Message("t", b"2")])
    assert remaining(path)[0] == 1
