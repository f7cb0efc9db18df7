"""The embedded event store on one SQLite file (``sqlite:///path/events.db``).

Layout
    ``tidings_streams`` (one row per stream: id, name, version, tombstone flag, metadata),
    ``tidings_commits`` (one row per append, events packed; see
    :mod:`tidings.eventsourcing.backends.commits`),
    ``tidings_snapshots`` and ``tidings_checkpoints``.
    Projections may keep their own tables in the same file and write them through
    :meth:`transaction`.
Concurrency
    One :class:`~tidings.sql.sqlite.Database` (WAL journal: one writer, readers never blocked).
    Writes are jobs of its group-commit :class:`~tidings.sql.sqlite_writer.Writer` (see
    :mod:`.appends`), reads use its reader connection; both run on the event-loop thread (a short
    SQLite call costs less than a thread hand-off), and a write lock held by another connection
    is waited for in a thread, up to ``busy_timeout`` (then ServiceUnavailable). Positions are
    assigned inside the write transaction, which SQLite serialises (also against other
    processes), so they are committed in order and ``read_all`` never sees a gap. Run one
    writing process per file; others may read. ``wait_for_new`` wakes up on this process's
    appends; another process's appends are seen when its timeout expires.
Durability (``synchronous``)
    ``"NORMAL"`` (default): a committed append survives a crash of the process; a power loss or
    OS crash may lose the last appends committed before it (never corrupting the file).
    ``"FULL"``: the WAL is fsynced at every commit, so a committed append survives power loss too;
    each commit (one per batch of concurrent appends) costs an fsync on the event-loop thread.
Erasure
    ``delete_stream`` overwrites the payloads with ``secure_delete`` on and checkpoints the WAL, so
    the erased bytes do not linger in free pages (a reader holding an old snapshot can delay the
    WAL part until the next checkpoint).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from tidings._waiters import Wakeup
from tidings.errors import ClosedError, NotFound
from tidings.eventsourcing.backends.commits import pack, read_log, read_stream, stream_info_of
from tidings.eventsourcing.backends.sqlite import sql as _sql
from tidings.eventsourcing.backends.sqlite.appends import Appends
from tidings.eventsourcing.store import (
    ANY,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    validate_expected_version,
)
from tidings.sql.sqlite import Database, Synchronous, fetch
from tidings.sql.sqlite_writer import Writer
from tidings.urls import redact

__all__ = ["SqliteEventStore", "SqliteTransaction"]

_json = msgspec.json.Encoder()


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SqliteEventStore:
    """The SQLite backend. ``path`` is the database file, created when missing."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = os.fspath(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise ValueError(
                "SqliteEventStore needs a file path; use memory:// for a store in memory"
            )
        level = synchronous.upper()
        if level not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.synchronous: Synchronous = "FULL" if level == "FULL" else "NORMAL"
        self.name = f"SQLite event store {self.path!r}"
        """What error messages call this store."""
        self.busy_timeout = busy_timeout
        self._db: Database | None = None
        self._starting = asyncio.Lock()
        self._wakeup = Wakeup()
        self._appends = Appends()
        self._erased = False  # the running batch erased payloads: checkpoint the WAL after it

    @classmethod
    def from_url(cls, url: str) -> SqliteEventStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db``; ``?synchronous=full``."""
        rest = url.partition("://")[2]
        rest, _, query = rest.partition("?")
        if not rest.startswith("/"):
            raise ValueError(f"expected sqlite:///path, got {redact(url)!r}")
        options = dict(parse_qsl(query))
        synchronous = options.pop("synchronous", "NORMAL").upper()
        if options:
            raise ValueError(f"unknown SQLite store options: {', '.join(sorted(options))}")
        return cls(rest[1:], synchronous=synchronous)  # type: ignore[arg-type]

    async def start(self) -> None:
        """Open the file (created with its tables when missing); raises ServiceUnavailable (a
        TransportError) when it cannot be opened. Idempotent; a closed store opens again."""
        async with self._starting:
            if self._db is not None:
                return
            db = Database(
                self.path, _sql.SCHEMA, name=self.name, synchronous=self.synchronous,
                busy_timeout=self.busy_timeout, begin=self._begin, committed=self._committed,
            )  # fmt: skip
            await db.open()
            self._db = db
            self._wakeup.reset(self._readable_head(db.query))

    async def aclose(self) -> None:
        db, self._db = self._db, None
        self._wakeup.close()
        if db is not None:
            await db.aclose()

    # -- writes: jobs run by the group-commit writer, on its connection ------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> int:
        validate_expected_version(expected_version)
        chunks = pack(events) if events else []
        writer = self._writer_or_closed()

        def job(connection: sqlite3.Connection) -> int:
            return self._appends.append(connection, stream, chunks, expected_version)

        return await writer.run(job)

    def _stream_id(self, db: Database, stream: str) -> int | None:
        stream_id = self._appends.known(stream)
        if stream_id is None:
            rows = db.query("SELECT id FROM tidings_streams WHERE name = ?", (stream,))
            if not rows:
                return None
            stream_id = rows[0][0]
            self._appends.remember([(stream, stream_id)])
        return stream_id

    def _begin(self) -> None:
        self._appends.begin()
        self._erased = False

    def _committed(self) -> None:
        self._appends.committed()
        if self._erased:
            self._erased = False
            connection = self._writer_or_closed().connection
            # Best effort, without waiting for readers (the writer's busy timeout is 0 on the
            # loop): the erased bytes leave the WAL now, or at the next checkpoint.
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._wakeup.reset(self._readable_head(partial(fetch, connection, name=self.name)))
        elif self._appends.position is not None:
            self._wakeup.advance(self._appends.position)

    async def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None:
        encoded = _json.encode(dict(metadata))

        def job(connection: sqlite3.Connection) -> None:
            stream_id = _sql.live_stream_id(connection, stream)
            connection.execute(
                "UPDATE tidings_streams SET metadata = ? WHERE id = ?", (encoded, stream_id)
            )

        await self._writer_or_closed().run(job)

    async def delete_stream(self, stream: str) -> None:
        def job(connection: sqlite3.Connection) -> None:
            stream_id, deleted = _sql.stream_row(connection, stream)
            if deleted:
                return
            connection.execute(
                "UPDATE tidings_streams SET deleted = 1, metadata = NULL WHERE id = ?", (stream_id,)
            )
            connection.execute(
                "UPDATE tidings_commits SET events = NULL WHERE stream_id = ?", (stream_id,)
            )
            connection.execute("DELETE FROM tidings_snapshots WHERE stream = ?", (stream,))
            self._erased = True

        await self._writer_or_closed().run(job)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        def job(connection: sqlite3.Connection) -> None:
            _sql.save_snapshot(connection, snapshot)

        await self._writer_or_closed().run(job)

    async def set_checkpoint(self, name: str, position: int) -> None:
        def job(connection: sqlite3.Connection) -> None:
            _sql.set_checkpoint(connection, name, position)

        await self._writer_or_closed().run(job)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        async with self._writer_or_closed().transaction() as connection:
            yield SqliteTransaction(connection, self.name)

    # -- reads: on the reader connection, one bounded query at a time --------------------------

    async def read(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        db = self._db_or_closed()
        stream_id = self._stream_id(db, stream)
        if stream_id is None:
            return

        async def forward(start: int, page: int) -> list[Any]:
            return db.query(_sql.READ_FORWARD, (stream_id, start, page))

        async def backward(below: int, page: int) -> list[Any]:
            return db.query(_sql.READ_BACKWARD, (stream_id, below, page))

        async for event in read_stream(
            self.name, stream, forward=forward, backward=backward, from_version=from_version,
            backwards=backwards, limit=limit, to_time=_timestamp,
        ):  # fmt: skip
            yield event

    async def read_all(
        self, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        db = self._db_or_closed()

        async def fetch(after: int, page: int) -> list[Any]:
            return db.query(_sql.READ_ALL, (after, page))

        async for event in read_log(self.name, fetch, after=after, limit=limit, to_time=_timestamp):
            yield event

    async def stream_info(self, stream: str) -> StreamInfo:
        rows = self._db_or_closed().query(
            "SELECT name, version, metadata, deleted FROM tidings_streams WHERE name = ?",
            (stream,),
        )
        if not rows:
            raise NotFound(f"stream {stream!r} does not exist")
        return stream_info_of(self.name, rows[0])

    async def streams(self) -> list[StreamInfo]:
        rows = self._db_or_closed().query(
            "SELECT name, version, metadata, deleted FROM tidings_streams ORDER BY id",
            (),
        )
        return [stream_info_of(self.name, row) for row in rows]

    async def head_position(self) -> int:
        return self._readable_head(self._db_or_closed().query)

    async def wait_for_new(self, after: int, timeout: float) -> None:
        self._db_or_closed()
        await self._wakeup.wait(after, timeout)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        rows = self._db_or_closed().query(
            "SELECT stream, version, type, data, schema_version FROM tidings_snapshots"
            " WHERE stream = ?",
            (stream,),
        )
        return Snapshot(*rows[0]) if rows else None

    async def get_checkpoint(self, name: str) -> int:
        db = self._db_or_closed()
        return db.read(partial(_sql.get_checkpoint, name=name, store=self.name))

    @staticmethod
    def _readable_head(query: Callable[[str], list[Any]]) -> int:
        rows = query(_sql.READABLE_HEAD)
        return int(rows[0][0]) if rows else 0

    def _db_or_closed(self) -> Database:
        if self._db is None:
            raise ClosedError(f"{self.name} is closed")
        return self._db

    def _writer_or_closed(self) -> Writer:
        return self._db_or_closed().writer


class SqliteTransaction:
    """A transaction on the store's writer connection (``connection`` is a sqlite3.Connection)."""

    def __init__(self, connection: sqlite3.Connection, store: str) -> None:
        self.connection = connection
        self._store = store

    async def set_checkpoint(self, name: str, position: int) -> None:
        _sql.set_checkpoint(self.connection, name, position)

    async def get_checkpoint(self, name: str) -> int:
        return _sql.get_checkpoint(self.connection, name, store=self._store)
