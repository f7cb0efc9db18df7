"""The embedded event store on one SQLite file (``sqlite:///path/events.db``).

Layout
    ``tidings_streams`` (one row per stream: id, name, version, tombstone flag, metadata),
    ``tidings_commits`` (one row per append, events packed; see
    :mod:`tidings.eventsourcing.backends.commits`),
    ``tidings_snapshots`` and ``tidings_checkpoints``.
    Projections may keep their own tables in the same file and write them through
    :meth:`transaction`.
Concurrency
    WAL journal: one writer, readers never blocked. In process, writes go through a
    :class:`~tidings.eventsourcing._sqlite_writer.GroupCommitWriter` on a writer connection, reads
    use a second connection; both run on the event-loop thread (a short SQLite call costs less
    than a thread hand-off). Positions are assigned inside the write transaction, which SQLite
    serialises (also against other processes), so they are committed in order and ``read_all``
    never sees a gap. Run one writing process per file; others may read. ``wait_for_new`` wakes up
    on this process's appends; another process's appends are seen when its timeout expires.
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

import os
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

import msgspec

from tidings._waiters import Wakeup
from tidings.errors import ClosedError, NotFound, TransportError
from tidings.eventsourcing import _sqlite_sql as _sql
from tidings.eventsourcing._sqlite_writer import GroupCommitWriter
from tidings.eventsourcing.backends.commits import (
    PAGE,
    backward_page,
    forward_page,
    log_page,
    pack,
    stream_info_of,
)
from tidings.eventsourcing.store import (
    ANY,
    NO_STREAM,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    check_expected_version,
    validate_expected_version,
)
from tidings.urls import redact

__all__ = ["SqliteEventStore", "SqliteTransaction"]

Synchronous = Literal["NORMAL", "FULL"]

_json = msgspec.json.Encoder()


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_STREAM_IDS_KEPT = 100_000


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
        self.synchronous = level
        self.name = f"SQLite event store {self.path!r}"
        """What error messages call this store."""
        self.busy_timeout = busy_timeout
        self._reader: sqlite3.Connection | None = None
        self._writer: GroupCommitWriter | None = None
        self._wakeup = Wakeup()
        self._position: int | None = None  # last position assigned by the running batch
        self._erased = False  # the running batch erased payloads: checkpoint the WAL after it
        # Stream names to row ids. A name's id never changes (a deleted stream keeps its row),
        # so entries never go stale; the dict is only emptied to bound its size.
        self._stream_ids: dict[str, int] = {}
        self._new_ids: list[tuple[str, int]] = []  # streams created by the running batch

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
        if self._writer is not None:
            return
        try:
            writer = self._connect()
            writer.execute("PRAGMA journal_mode = WAL")
            writer.execute(f"PRAGMA synchronous = {self.synchronous}")
            writer.execute("PRAGMA secure_delete = ON")
            writer.executescript(_sql.SCHEMA)
            reader = self._connect()
            reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise TransportError(f"cannot open SQLite event store {self.path!r}: {exc}") from exc
        self._reader = reader
        self._writer = GroupCommitWriter(writer, begin=self._begin, committed=self._committed)
        self._wakeup.reset(self._readable_head(reader))

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        connection.execute("PRAGMA cache_size = -32000")  # KiB
        connection.execute("PRAGMA mmap_size = 268435456")
        return connection

    async def aclose(self) -> None:
        writer, reader = self._writer, self._reader
        self._wakeup.close()
        if writer is not None:
            writer.close()
            writer.connection.close()
        if reader is not None:
            reader.close()
        self._writer = self._reader = None

    # -- writes: jobs run by the group-commit writer, on its connection ------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> int:
        validate_expected_version(expected_version)
        chunks = pack(events) if events else []
        writer = self._writer_or_closed()

        def job(connection: sqlite3.Connection) -> int:
            return self._append(connection, stream, chunks, expected_version)

        return await writer.run(job)

    def _append(
        self,
        connection: sqlite3.Connection,
        stream: str,
        chunks: list[tuple[int, bytes]],
        expected: ExpectedVersion,
    ) -> int:
        total = sum(count for count, _ in chunks)
        if total and (expected == NO_STREAM or expected == 0):
            # A new stream: try the insert first and look at the existing row only on conflict.
            try:
                cursor = connection.execute(
                    "INSERT INTO tidings_streams (name, version) VALUES (?, ?)", (stream, total)
                )
            except sqlite3.IntegrityError:
                pass
            else:
                return self._insert_commits(connection, self._cache_id(stream, cursor), 0, chunks)
        row = connection.execute(
            "SELECT id, version, deleted FROM tidings_streams WHERE name = ?", (stream,)
        ).fetchone()
        if row is None:
            check_expected_version(stream, expected, None)
            if not total:
                return 0
            cursor = connection.execute(
                "INSERT INTO tidings_streams (name, version) VALUES (?, ?)", (stream, total)
            )
            return self._insert_commits(connection, self._cache_id(stream, cursor), 0, chunks)
        stream_id, version, deleted = row
        check_expected_version(stream, expected, version, bool(deleted))
        if not total:
            return int(version)
        connection.execute(
            "UPDATE tidings_streams SET version = ? WHERE id = ?", (version + total, stream_id)
        )
        return self._insert_commits(connection, stream_id, version, chunks)

    def _cache_id(self, stream: str, cursor: sqlite3.Cursor) -> int:
        # Remembered once committed: a rolled-back batch may give the id to another stream.
        stream_id = cursor.lastrowid or 0
        self._new_ids.append((stream, stream_id))
        return stream_id

    def _stream_id(self, reader: sqlite3.Connection, stream: str) -> int | None:
        stream_id = self._stream_ids.get(stream)
        if stream_id is None:
            rows = _sql.query(reader, "SELECT id FROM tidings_streams WHERE name = ?", (stream,))
            if not rows:
                return None
            stream_id = rows[0][0]
            self._remember_ids([(stream, stream_id)])
        return stream_id

    def _remember_ids(self, ids: list[tuple[str, int]]) -> None:
        if len(self._stream_ids) + len(ids) > _STREAM_IDS_KEPT:
            self._stream_ids.clear()
        self._stream_ids.update(ids)

    def _insert_commits(
        self,
        connection: sqlite3.Connection,
        stream_id: int,
        version: int,
        chunks: list[tuple[int, bytes]],
    ) -> int:
        now = time.time()
        for count, packed in chunks:
            version += count
            # The position is computed in the statement: max(position) is the rightmost key of
            # the table's b-tree, and the write lock makes it ours until the commit.
            cursor = connection.execute(
                _sql.INSERT_COMMIT, (count, stream_id, version, count, now, packed)
            )
        self._position = cursor.lastrowid
        return version

    def _begin(self) -> None:
        self._position = None  # the last position assigned in this batch
        self._erased = False
        self._new_ids = []

    def _committed(self) -> None:
        if self._new_ids:
            self._remember_ids(self._new_ids)
            self._new_ids = []
        if self._erased:
            self._erased = False
            connection = self._writer_or_closed().connection
            # Best effort, without waiting for readers: the event loop must not block here.
            connection.execute("PRAGMA busy_timeout = 0")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._wakeup.reset(self._readable_head(connection))
        elif self._position is not None:
            self._wakeup.advance(self._position)

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
            yield SqliteTransaction(connection)

    # -- reads: on the reader connection, one bounded query at a time --------------------------

    async def read(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        reader = self._reader_or_closed()
        stream_id = self._stream_id(reader, stream)
        if stream_id is None:
            return
        left = -1 if limit is None else limit
        if backwards:
            below = 2**62 if from_version is None else from_version
            while left:
                rows = _sql.query(reader, _sql.READ_BACKWARD, (stream_id, below + 1, PAGE))
                events, below, left = backward_page(
                    self.name, stream, rows, below, left, _timestamp
                )
                for event in events:
                    yield event
                if len(rows) < PAGE:
                    return
        else:
            start = 1 if from_version is None else from_version
            while left:
                rows = _sql.query(reader, _sql.READ_FORWARD, (stream_id, start, PAGE))
                events, start, left = forward_page(self.name, stream, rows, start, left, _timestamp)
                for event in events:
                    yield event
                if len(rows) < PAGE:
                    return

    async def read_all(
        self, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        reader = self._reader_or_closed()
        left = -1 if limit is None else limit
        while left:
            rows = _sql.query(reader, _sql.READ_ALL, (after, PAGE if left < 0 else min(left, PAGE)))
            events, after, left = log_page(self.name, rows, after, left, _timestamp)
            for event in events:
                yield event
            if len(rows) < PAGE:
                return

    async def stream_info(self, stream: str) -> StreamInfo:
        rows = _sql.query(
            self._reader_or_closed(),
            "SELECT name, version, metadata, deleted FROM tidings_streams WHERE name = ?",
            (stream,),
        )
        if not rows:
            raise NotFound(f"stream {stream!r} does not exist")
        return stream_info_of(self.name, rows[0])

    async def streams(self) -> list[StreamInfo]:
        rows = _sql.query(
            self._reader_or_closed(),
            "SELECT name, version, metadata, deleted FROM tidings_streams ORDER BY id",
            (),
        )
        return [stream_info_of(self.name, row) for row in rows]

    async def head_position(self) -> int:
        return self._readable_head(self._reader_or_closed())

    async def wait_for_new(self, after: int, timeout: float) -> None:
        self._reader_or_closed()
        await self._wakeup.wait(after, timeout)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        rows = _sql.query(
            self._reader_or_closed(),
            "SELECT stream, version, type, data, schema_version FROM tidings_snapshots"
            " WHERE stream = ?",
            (stream,),
        )
        return Snapshot(*rows[0]) if rows else None

    async def get_checkpoint(self, name: str) -> int:
        return _sql.get_checkpoint(self._reader_or_closed(), name)

    @staticmethod
    def _readable_head(connection: sqlite3.Connection) -> int:
        rows = _sql.query(connection, _sql.READABLE_HEAD, ())
        return int(rows[0][0]) if rows else 0

    def _reader_or_closed(self) -> sqlite3.Connection:
        if self._reader is None:
            raise ClosedError("the event store is closed")
        return self._reader

    def _writer_or_closed(self) -> GroupCommitWriter:
        if self._writer is None:
            raise ClosedError("the event store is closed")
        return self._writer


class SqliteTransaction:
    """A transaction on the store's writer connection (``connection`` is a sqlite3.Connection)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def set_checkpoint(self, name: str, position: int) -> None:
        _sql.set_checkpoint(self.connection, name, position)

    async def get_checkpoint(self, name: str) -> int:
        return _sql.get_checkpoint(self.connection, name)
