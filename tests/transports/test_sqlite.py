"""The SQLite transport beyond the conformance suite: options, crashes, other processes,
retention, errors."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from brokers import Numbers, held_messages_come_again
from test_sqlite_suite import insert_row

from tidings.bus import Bus
from tidings.errors import ClosedError, ServiceUnavailable
from tidings.message import Message
from tidings.testing.receiver import Receiver, opened
from tidings.transports import GroupInfo, from_url
from tidings.transports.base import Delivery
from tidings.transports.sqlite import SqliteDeadLetterStore, SqliteOptions, SqliteTransport


def messages(count: int) -> list[Message]:
    return [Message("item", b'{"n":%d}' % n, {"n": str(n)}) for n in range(count)]


def log_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT count(*) FROM tidings_log").fetchone()
    return int(count)


def test_options_from_url() -> None:
    options = SqliteOptions.from_url("sqlite:///events.db?lease=5&poll=0.5&synchronous=full")
    assert options == SqliteOptions("events.db", lease=5.0, poll=0.5, synchronous="full")
    assert SqliteOptions.from_url("sqlite:////var/lib/app.db").path == "/var/lib/app.db"
    assert isinstance(from_url("sqlite:///events.db"), SqliteTransport)


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///x.db?nope=1",
     "sqlite:///x.db?lease=0", "sqlite:///x.db?synchronous=off"],
)  # fmt: skip
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # the message is what varies
        SqliteOptions.from_url(url)


async def test_unopenable_file_is_service_unavailable(tmp_path: Path) -> None:
    transport = SqliteTransport(f"sqlite:///{tmp_path}/missing/dir/q.db")
    with pytest.raises(ServiceUnavailable, match=r"missing/dir/q\.db"):
        await transport.start()
    await transport.aclose()


async def test_closed_transport_refuses_work(sqlite_url: str) -> None:
    transport = SqliteTransport(sqlite_url)
    await transport.start()
    await transport.aclose()
    await transport.aclose()
    with pytest.raises(ClosedError):
        await transport.publish("t", messages(1))
    with pytest.raises(ClosedError):
        transport.subscribe("t", group="g")


async def test_patterns_are_for_subscribing(sqlite_url: str) -> None:
    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        with pytest.raises(ValueError, match="pattern"):
            await transport.publish("user.*", messages(1))
        with pytest.raises(ValueError, match="last token"):
            transport.subscribe("user.>.x", group="g")


async def test_a_killed_consumers_messages_come_again(sqlite_url: str) -> None:
    await held_messages_come_again(f"{sqlite_url}?lease=0.5")


async def test_messages_from_another_process_arrive(sqlite_url: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from tidings.message import Message\n"
        "from tidings.transports import from_url\n"
        "async def main():\n"
        "    t = from_url(sys.argv[1])\n"
        "    for n in range(100):\n"
        "        m = Message.restore('item', b'%d' % n, {}, None, f'other-{n}', None)\n"
        "        await t.publish('from.other', [m])\n"
        "    await t.aclose()\n"
        "asyncio.run(main())\n"
    )
    async with opened(lambda: SqliteTransport(f"{sqlite_url}?poll=0.05")) as transport:
        receiver = Receiver(transport.subscribe("from.other", group="g"))
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, sqlite_url)
        assert await process.wait() == 0
        await receiver.until_ids([f"other-{n}" for n in range(100)])
        await receiver.aclose()


async def test_acknowledged_messages_are_deleted(sqlite_url: str, tmp_path: Path) -> None:
    """Log rows every group has acknowledged go; rows a group still needs stay."""
    sent = messages(50)

    async def hold(delivery: Delivery) -> None:
        pass

    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        fast = Receiver(transport.subscribe("kept", group="fast"))
        slow = Receiver(transport.subscribe("kept", group="slow"), settle=hold)
        await transport.publish("kept", sent)
        await fast.until_ids([m.id for m in sent])
        await slow.until_ids([m.id for m in sent])
    await _one_more(sqlite_url, "fast")
    assert log_rows(tmp_path / "tidings.db") == 51, "the slow group still needs every message"

    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        slow = Receiver(transport.subscribe("kept", group="slow"))
        await slow.until(lambda: len(slow.ids) == 51, "the slow group's messages")
    await _one_more(sqlite_url, "slow")
    assert log_rows(tmp_path / "tidings.db") <= 1, "only the newest message may be left"


async def test_a_dropped_group_no_longer_holds_messages(sqlite_url: str, tmp_path: Path) -> None:
    """A group whose consumers are gone keeps every message until it is dropped."""

    async def hold(delivery: Delivery) -> None:
        pass

    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        fast = Receiver(transport.subscribe("kept", group="fast"))
        gone = Receiver(transport.subscribe("kept", group="gone"), settle=hold)
        await transport.publish("kept", messages(50))
        await fast.until(lambda: len(fast.deliveries) == 50, "fast's messages")
        await gone.until(lambda: len(gone.deliveries) == 50, "gone's messages")
    await _one_more(sqlite_url, "fast")
    assert log_rows(tmp_path / "tidings.db") == 51

    transport = SqliteTransport(sqlite_url)
    await transport.drop_group("kept", "gone")
    await transport.aclose()
    await _one_more(sqlite_url, "fast")
    assert log_rows(tmp_path / "tidings.db") <= 1


async def test_a_file_of_an_earlier_version_gets_group_activity(tmp_path: Path) -> None:
    """Cursors of files made before groups recorded their activity gain the column on open."""
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE tidings_cursors (id INTEGER PRIMARY KEY, grp TEXT NOT NULL, "
            "topic TEXT NOT NULL, position INTEGER NOT NULL, UNIQUE (grp, topic))"
        )
        db.execute("INSERT INTO tidings_cursors (grp, topic, position) VALUES ('old', 't', 0)")
        db.commit()
    transport = SqliteTransport(f"sqlite:///{path}")
    try:
        assert await transport.groups() == [GroupInfo("t", "old", 0, 0, None)]
    finally:
        await transport.aclose()


async def test_deletion_keeps_up_with_a_large_backlog(sqlite_url: str, tmp_path: Path) -> None:
    """Once a backlog far larger than one deletion batch of old (20,000 rows) was acknowledged,
    the next fetch deletes all of it."""
    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        receiver = Receiver(transport.subscribe("kept", group="g", prefetch=5000))
        for _ in range(6):
            await transport.publish("kept", messages(5000))
        await receiver.until(lambda: len(receiver.deliveries) == 30_000, "the backlog")
    await _one_more(sqlite_url, "g")
    assert log_rows(tmp_path / "tidings.db") <= 1


async def test_space_of_deleted_messages_is_given_back(tmp_path: Path) -> None:
    """A new file shrinks back to its ``spare_mb`` of free space once a backlog is handled."""
    path = tmp_path / "tidings.db"
    url = f"sqlite:///{path}?spare_mb=1"
    await _one_more(url, "g")  # the group exists: it keeps what is published
    async with opened(lambda: SqliteTransport(url)) as transport:
        for _ in range(10):
            await transport.publish("kept", [Message("item", b"x" * 1000) for _ in range(1000)])
    grown = path.stat().st_size
    async with opened(lambda: SqliteTransport(url)) as transport:
        receiver = Receiver(transport.subscribe("kept", group="g"))
        await receiver.until(lambda: len(receiver.deliveries) == 10_000, "the backlog")
    await _one_more(url, "g")  # deletes the rows
    await _one_more(url, "g")  # gives their pages back
    assert grown > 10_000_000
    assert path.stat().st_size < 3_000_000


async def _one_more(url: str, group: str) -> None:
    """Publish and receive one message: a fetch, which deletes what is no longer needed."""
    async with opened(lambda: SqliteTransport(url)) as transport:
        receiver = Receiver(transport.subscribe("kept", group=group))
        await transport.publish("kept", messages(1))
        await receiver.until(lambda: len(receiver.ids) == 1, "one more message")


async def test_dead_letter_store_on_its_own(tmp_path: Path) -> None:
    """The store opens a file by path (for a Bus whose transport is elsewhere)."""
    store = SqliteDeadLetterStore(str(tmp_path / "letters.db"))
    assert await store.list() == []
    await store.aclose()


def test_sqlite_file_is_not_locked_after_close(tmp_path: Path) -> None:
    async def use() -> None:
        async with opened(lambda: SqliteTransport(f"sqlite:///{tmp_path}/q.db")) as transport:
            await transport.publish("t", messages(3))

    asyncio.run(use())
    result = subprocess.run(
        ["sqlite3", str(tmp_path / "q.db"), "BEGIN IMMEDIATE; COMMIT;"], check=False
    )
    assert result.returncode == 0


async def test_a_row_with_text_that_is_not_utf8_is_delivered(sqlite_url: str) -> None:
    """Another program's row whose id, type and key columns hold bytes that are not UTF-8 (SQLite
    does not check) arrives with fallbacks; the rows around it arrive too."""
    path = sqlite_url.removeprefix("sqlite:///")
    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        receiver = Receiver(transport.subscribe("legacy", group="g"), timeout=30)
        await transport.publish("legacy", messages(1))
        with sqlite3.connect(path) as db:
            db.execute(
                "INSERT INTO tidings_log (topic, id, type, key, data, time) VALUES "
                "('legacy', CAST(X'FFFE' AS TEXT), CAST(X'FF' AS TEXT), CAST(X'6BFF' AS TEXT), "
                "X'7B7D', 'xx')"
            )
        db.close()
        await transport.publish("legacy", messages(1))
        await receiver.until(lambda: len(receiver.deliveries) == 3, "all three rows")
        foreign = receiver.messages[1]
        assert (foreign.type, foreign.key, foreign.data) == ("legacy", "k\ufffd", b"{}")
        assert foreign.id
        foreign.time  # noqa: B018  # a valid time
        await receiver.aclose()


async def test_a_row_with_unreadable_headers_is_dead_lettered_once(sqlite_url: str) -> None:
    """A row whose headers column is not JSON, leased in one batch with good rows: the good ones
    are handled, the bad one is dead-lettered with its raw payload, and a restarted bus neither
    sees it again nor stops on it."""
    path = sqlite_url.removeprefix("sqlite:///")
    handle = Numbers()
    handled, done = handle.handled, handle.done

    def start() -> Bus:
        bus = Bus(sqlite_url)
        bus.subscribe("legacy", handle, group="g")
        return bus

    good = [Message("legacy", b'{"n":%d}' % n) for n in range(3)]
    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        await transport.publish("legacy", good[:2])
        insert_row(path, "legacy", b'{"n":99}', {"h": b"\xff\xfe"})
        await transport.publish("legacy", good[2:])
    async with start() as bus:
        await bus.publish(Message("legacy", b'{"n":9}'))
        await asyncio.wait_for(done.wait(), 30)
        (letter,) = await bus.dead_letters.list()
    assert sorted(handled) == [0, 1, 2, 9]
    assert (letter.data, letter.attempts) == (b'{"n":99}', 1)
    assert "not a JSON object of strings" in letter.error_message
    done.clear()
    async with start() as bus:
        await bus.publish(Message("legacy", b'{"n":9}'))
        await asyncio.wait_for(done.wait(), 30)
        assert len(await bus.dead_letters.list()) == 1
    assert sorted(handled) == [0, 1, 2, 9, 9]


async def test_a_row_whose_topic_is_a_blob_does_not_stop_a_wildcard_subscription(
    sqlite_url: str,
) -> None:
    """Another program's row with a BLOB topic is matched as text: the pattern consumer goes on."""
    path = sqlite_url.removeprefix("sqlite:///")
    handle = Numbers()
    handled, done = handle.handled, handle.done

    async with opened(lambda: SqliteTransport(sqlite_url)) as transport:
        await transport.publish("t.a", [Message("t.a", b'{"n":1}')])
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO tidings_log (topic, id, type, key, headers, data, time) "
            "VALUES (?, ?, ?, NULL, NULL, ?, ?)",
            (b"t.\xff", "foreign", "t.b", b'{"n":2}', time.time()),
        )
    bus = Bus(sqlite_url)
    bus.subscribe("t.>", handle, group="g")
    async with bus:
        await bus.publish(Message("t.c", b'{"n":9}'))
        await asyncio.wait_for(done.wait(), 30)
        assert bus.health().ok
    assert 9 in handled
