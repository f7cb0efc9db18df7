"""The SQLite event store: the conformance suite, durability settings, and a second process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.eventsourcing.backends.sqlite import SqliteEventStore
from tidings.eventsourcing.store import NO_STREAM, EventStore, Snapshot
from tidings.testing.eventstore_suite import EventStoreSuite, new_events


class TestSqliteEventStore(EventStoreSuite):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EventStore]:
        async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
            yield store


READ_BACK = """
import asyncio, json, os, sys
from tidings.eventsourcing.store import EventStore, NewEvent

async def main() -> None:
    store = EventStore(f"sqlite:///{sys.argv[1]}")
    events = [(e.stream, e.version, e.position, e.data.decode()) async for e in store.read_all()]
    info = await store.stream_info("gone")
    snapshot = await store.load_snapshot("account-1")
    print(json.dumps({
        "events": events,
        "metadata": dict((await store.stream_info("account-1")).metadata),
        "deleted": info.deleted,
        "snapshot": snapshot.version if snapshot else None,
        "checkpoint": await store.get_checkpoint("projection"),
    }), flush=True)
    await store.append("account-1", [NewEvent("written.by.child", b"{}")], expected_version=3)
    os._exit(0)  # exit without closing the store: a process crash after the append

asyncio.run(main())
"""


async def test_another_process_reopening_the_file_sees_everything(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("account-1", new_events(3), expected_version=NO_STREAM)
        await store.append("gone", new_events(1))
        await store.set_stream_metadata("account-1", {"owner": "Jane"})
        await store.save_snapshot(Snapshot("account-1", 3, "Account", b"{}"))
        await store.set_checkpoint("projection", 4)
        await store.delete_stream("gone")

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READ_BACK, str(path), stdout=asyncio.subprocess.PIPE
    )
    output, _ = await child.communicate()
    assert child.returncode == 0

    seen = json.loads(output)
    assert seen == {
        "events": [["account-1", v, v, f'{{"n":{v - 1}}}'] for v in (1, 2, 3)],
        "metadata": {"owner": "Jane"},
        "deleted": True,
        "snapshot": 3,
        "checkpoint": 4,
    }
    async with EventStore(f"sqlite:///{path}") as store:  # the child's append survived its crash
        last = [e async for e in store.read("account-1", backwards=True, limit=1)]
        assert [(e.version, e.type) for e in last] == [(4, "written.by.child")]
        assert await store.head_position() == 5


async def test_projection_rows_commit_and_roll_back_with_the_checkpoint(tmp_path: Path) -> None:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        async with store.transaction() as tx:
            tx.connection.execute("CREATE TABLE balances (id TEXT PRIMARY KEY, amount INTEGER)")
            tx.connection.execute("INSERT INTO balances VALUES ('a', 10)")
            await tx.set_checkpoint("balances", 1)

        async def failing() -> None:
            async with store.transaction() as tx:
                tx.connection.execute("UPDATE balances SET amount = 99")
                await tx.set_checkpoint("balances", 2)
                raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError, match="handler failed"):
            await failing()

        async with store.transaction() as tx:
            rows = tx.connection.execute("SELECT id, amount FROM balances").fetchall()
        assert rows == [("a", 10)]
        assert await store.get_checkpoint("balances") == 1


async def test_a_store_write_inside_its_own_transaction_is_refused(tmp_path: Path) -> None:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:

        async def deadlock() -> None:
            async with store.transaction():
                await store.append("s", new_events(1))

        with pytest.raises(RuntimeError, match=r"inside store\.transaction"):
            await deadlock()
        assert [e async for e in store.read("s")] == []


@pytest.mark.parametrize(("query", "level"), [("", 1), ("?synchronous=full", 2)])
async def test_the_durability_setting_comes_from_the_url(
    tmp_path: Path, query: str, level: int
) -> None:
    async with EventStore(f"sqlite:///{tmp_path}/events.db{query}") as store:
        await store.append("s", new_events(1))
        async with store.transaction() as tx:
            assert tx.connection.execute("PRAGMA synchronous").fetchone() == (level,)
            assert tx.connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_urls_name_relative_and_absolute_files() -> None:
    assert SqliteEventStore.from_url("sqlite:///events.db").path == "events.db"
    assert SqliteEventStore.from_url("sqlite:////var/lib/app/events.db").path == (
        "/var/lib/app/events.db"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///events.db?synchronous=off", "synchronous"),
        ("sqlite:///events.db?journal=delete", "unknown SQLite store options: journal"),
        ("sqlite:///:memory:", "memory://"),
    ],
)
def test_bad_sqlite_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventStore(url)


async def test_a_file_that_cannot_be_opened_is_a_transport_error(tmp_path: Path) -> None:
    from tidings.errors import TransportError

    store = EventStore(f"sqlite:///{tmp_path}/missing-directory/events.db")
    with pytest.raises(TransportError, match="cannot open SQLite event store"):
        await store.start()


async def test_a_locked_file_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    """An append into a file another connection holds locked waits in a thread (the loop keeps
    running), fails with ServiceUnavailable after ``busy_timeout``, and writes nothing; one
    waiting for a short lock goes through."""
    from tidings.errors import ServiceUnavailable

    path = tmp_path / "events.db"
    store = SqliteEventStore(path, busy_timeout=0.3)
    async with EventStore(store):
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(ServiceUnavailable, match=r"events\.db.*locked"):
            await store.append("s", new_events(1), expected_version=NO_STREAM)
        assert ticks >= 10, "the loop ran while the append waited"
        waiting = asyncio.create_task(store.append("s", new_events(1), expected_version=NO_STREAM))
        await asyncio.sleep(0.1)
        other.execute("ROLLBACK")
        other.close()
        assert await waiting == 1
        ticker.cancel()
        assert [e.version async for e in store.read("s")] == [1]
