"""A corrupt commit row raises CorruptRecord naming the store, the stream and where in it.

Rows are damaged behind the store's back (as a disk fault or a hand-edit would), on SQLite and on
PostgreSQL; every read path that meets the row must say which row it is, never load a wrong state.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import msgspec
import pytest

from tidings.errors import CorruptRecord
from tidings.eventsourcing.store import EventStore, NewEvent, RecordedEvent

PG_DSN = os.environ.get("TIDINGS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

Damage = Callable[[str, tuple[object, ...]], Awaitable[None]]
"""Runs one SQL statement (``?`` placeholders) on the store's database, outside the store."""

_BAD_TYPES = msgspec.msgpack.encode([[7, b"{}", "id-1", {}, 1]])  # the event type is a number


def _events(count: int) -> list[NewEvent]:
    return [NewEvent("deposited", b'{"amount": %d}' % i) for i in range(count)]


def _damager(store: EventStore) -> Damage:
    backend = store.backend
    if hasattr(backend, "path"):

        async def on_sqlite(sql: str, args: tuple[object, ...]) -> None:
            with sqlite3.connect(backend.path) as connection:
                connection.execute(sql, args)

        return on_sqlite
    schema = backend.schema  # type: ignore[attr-defined]

    async def on_postgres(sql: str, args: tuple[object, ...]) -> None:
        for index in range(len(args)):
            sql = sql.replace("?", f"${index + 1}", 1)
        connection = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        try:
            await connection.execute(sql, *args)
        finally:
            await connection.close()

    return on_postgres


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("change", "args", "where", "reason"),
    [
        ("events = ?", (b"\xc1\xff not msgpack",), "versions 1-2, positions 4-5", "events"),
        ("events = ?", (_BAD_TYPES,), "versions 1-2, positions 4-5", "events"),
        ("count = count + 1", (), "versions 0-2, positions 3-5", "holds 2 events, not 3"),
    ],
    ids=["bad-bytes", "wrong-types", "count-mismatch"],
)
async def test_a_corrupt_commit_names_store_stream_and_versions(
    store: EventStore, backend: str, change: str, args: tuple[object, ...], where: str, reason: str
) -> None:
    await store.append("account-1", _events(3))
    await store.append("account-2", _events(2))
    await _damager(store)(
        f"UPDATE tidings_commits SET {change} WHERE version = 2 AND stream_id = "
        "(SELECT id FROM tidings_streams WHERE name = 'account-2')",
        args,
    )
    readers: dict[str, Callable[[], AsyncIterator[RecordedEvent]]] = {
        "read": lambda: store.read("account-2"),
        "backwards": lambda: store.read("account-2", backwards=True),
        "read_all": lambda: store.read_all(),
    }
    for name, reader in readers.items():
        with pytest.raises(CorruptRecord) as caught:
            [event async for event in reader()]
        message = str(caught.value)
        assert f"stream 'account-2' {where}" in message, name
        assert ("SQLite" if backend == "sqlite" else "PostgreSQL") in message, name
        assert reason in message, name
    # the stream before it still reads as it did
    assert [event.version async for event in store.read("account-1")] == [1, 2, 3]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_corrupt_stream_metadata_names_the_stream(store: EventStore) -> None:
    await store.append("account-1", _events(1))
    await _damager(store)(
        "UPDATE tidings_streams SET metadata = ? WHERE name = 'account-1'", (b"{not json",)
    )
    with pytest.raises(CorruptRecord, match=r"stream 'account-1'.*metadata"):
        await store.stream_info("account-1")
    with pytest.raises(CorruptRecord, match="stream 'account-1'"):
        await store.streams()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_recorded_time_of_the_wrong_type_is_a_corrupt_record(store: EventStore) -> None:
    await store.append("account-1", _events(1))
    await _damager(store)("UPDATE tidings_commits SET recorded_at = 'noon'", ())
    with pytest.raises(CorruptRecord, match="stream 'account-1' version 1, position 1"):
        [event async for event in store.read("account-1")]
