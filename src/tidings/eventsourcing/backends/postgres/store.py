"""The event store on PostgreSQL (``postgresql://user@host:5432/db?schema=name``), with asyncpg.

Layout
    The tables of the SQLite store (``tidings_streams``, ``tidings_commits`` with one row per
    append, ``tidings_snapshots``, ``tidings_checkpoints``) plus ``tidings_head``, a single row
    holding the last assigned position, and the ``tidings_append`` function, all in ``schema``
    (``public`` by default). Pooled connections use that schema as their ``search_path``, so a
    projection's tables created through :meth:`transaction` land next to the store's.
Appends: one round trip, shared by concurrent appends
    ``tidings_append`` checks the expected version, inserts the commit row, updates the stream
    and notifies listeners, in one statement in its own transaction. Concurrent appends of one
    process go together through ``tidings_append_many`` (one round trip and one commit for a
    batch, each append still checked on its own; see :mod:`.batch`).
The gap problem, and its solution
    With positions from a sequence, two concurrent appends may take positions 7 and 8 and commit
    8 first; a reader that saw 8 and moved its checkpoint past it would never read 7. Here every
    append first locks the ``tidings_head`` row and takes its positions from it; the lock is held
    until the append commits. PostgreSQL makes a committed transaction visible before it releases
    its locks, so by the time the next append gets its positions, every lower position is visible
    to every new snapshot: ``read_all`` is gap-free. The price is that commits touching the log
    happen one at a time, each holding the lock through its WAL flush; batching the appends of a
    process into one commit is what keeps concurrent appends fast.
Live subscriptions
    Each append runs ``pg_notify('tidings_<schema>', position)``; ``wait_for_new`` listens on a
    dedicated connection opened on first use (and opened again after a server restart).
    Notifications are delivered at commit, in commit order.
Connections
    The pool, the LISTEN connection and the mapping of asyncpg's errors are
    :mod:`tidings.sql.postgres`'s and :mod:`tidings.sql.listen`'s, shared with the transport.
Erasure
    ``delete_stream`` sets the payloads to NULL; PostgreSQL removes the old row versions at the
    next ``VACUUM`` of ``tidings_commits`` (autovacuum, or run it after a deletion request).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from tidings._waiters import Wakeup
from tidings.errors import ConcurrencyError, NotFound, StreamDeleted
from tidings.eventsourcing.backends.commits import pack, read_log, read_stream, stream_info_of
from tidings.eventsourcing.backends.postgres.batch import AppendBatcher
from tidings.eventsourcing.backends.postgres.sql import (
    APPEND,
    DELETE_STREAM,
    READ_ALL,
    READ_BACKWARD,
    READ_FORWARD,
    READABLE_HEAD,
    SAVE_SNAPSHOT,
    SET_CHECKPOINT,
    SET_METADATA,
    schema_ddl,
)
from tidings.eventsourcing.records import (
    ANY,
    NO_STREAM,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    validate_expected_version,
)
from tidings.sql.listen import Listener
from tidings.sql.postgres import Postgres, where

__all__ = ["PostgresEventStore", "PostgresTransaction"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")
_NO_STREAM_CODE = -1
_ANY_CODE = -2


class PostgresEventStore:
    """The PostgreSQL backend. ``dsn`` is an asyncpg/libpq URL; ``pool_size`` bounds the pool."""

    def __init__(self, dsn: str, *, schema: str = "public", pool_size: int = 10) -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(
                f"schema must be a plain identifier of at most 51 characters: {schema!r}"
            )
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self.channel = f"tidings_{schema}"
        self.where = where(dsn)
        """host:port/database, for error messages (no credentials)."""
        self.name = f"PostgreSQL event store {self.where} (schema {schema})"
        """What error messages call this store."""
        settings = {"search_path": schema, "default_transaction_isolation": "read committed"}
        self._db = Postgres(
            dsn, name=self.name, pool_size=pool_size, settings=settings, prepare=self._prepare
        )
        self._errors = self._db.errors
        self._batcher = AppendBatcher(self._db)
        self._listener = Listener(
            self._db, self.channel, notified=self._notified, connected=self._caught_up
        )
        self._wakeup = Wakeup()

    @classmethod
    def from_url(cls, url: str) -> PostgresEventStore:
        """Takes ``schema`` and ``pool_size`` from the query; the rest goes to asyncpg."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "public")
        pool_size = int(query.pop("pool_size", "10"))
        dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
        return cls(dsn, schema=schema, pool_size=pool_size)

    async def start(self) -> None:
        await self._db.open()

    async def aclose(self) -> None:
        self._wakeup.close()
        await self._listener.aclose()
        await self._db.aclose()

    async def _prepare(self, connection: Any) -> None:
        async with connection.transaction():
            await connection.execute(schema_ddl(self.schema, self.channel))

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> int:
        validate_expected_version(expected_version)
        chunks = pack(events) if events else []
        if expected_version == ANY:
            code = _ANY_CODE
        elif expected_version == NO_STREAM:
            code = _NO_STREAM_CODE
        else:
            code = int(expected_version)
        pool = self._db.pool
        version: int | None
        if len(chunks) == 1:
            status, version = await self._batcher.append(stream, code, *chunks[0])
        else:
            with self._errors.mapping("appending"):
                status, version, _ = await pool.fetchrow(
                    APPEND, stream, code, [c for c, _ in chunks], [p for _, p in chunks]
                )
        if status == 0:
            return version or 0
        if status == 2:
            raise StreamDeleted(stream)
        raise ConcurrencyError(stream, expected_version, version)

    async def read(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        pool = self._db.pool

        async def forward(start: int, page: int) -> Sequence[Any]:
            with self._errors.mapping("reading"):
                return await pool.fetch(READ_FORWARD, stream, start, page)

        async def backward(below: int, page: int) -> Sequence[Any]:
            with self._errors.mapping("reading"):
                return await pool.fetch(READ_BACKWARD, stream, below, page)

        async for event in read_stream(
            self.name, stream, forward=forward, backward=backward, from_version=from_version,
            backwards=backwards, limit=limit, to_time=_as_is,
        ):  # fmt: skip
            yield event

    async def read_all(
        self, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        pool = self._db.pool

        async def fetch(after: int, page: int) -> Sequence[Any]:
            with self._errors.mapping("reading"):
                return await pool.fetch(READ_ALL, after, page)

        async for event in read_log(self.name, fetch, after=after, limit=limit, to_time=_as_is):
            yield event

    async def stream_info(self, stream: str) -> StreamInfo:
        with self._errors.mapping("reading"):
            row = await self._db.pool.fetchrow(
                "SELECT name, version, metadata, deleted FROM tidings_streams WHERE name = $1",
                stream,
            )
        if row is None:
            raise NotFound(f"stream {stream!r} does not exist")
        return stream_info_of(self.name, row)

    async def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None:
        encoded = msgspec.json.encode(dict(metadata)).decode()
        with self._errors.mapping("writing"):
            deleted = await self._db.pool.fetchval(SET_METADATA, stream, encoded)
        if deleted is None:
            raise NotFound(f"stream {stream!r} does not exist")
        if deleted:
            raise StreamDeleted(stream)

    async def streams(self) -> list[StreamInfo]:
        with self._errors.mapping("reading"):
            rows = await self._db.pool.fetch(
                "SELECT name, version, metadata, deleted FROM tidings_streams ORDER BY id"
            )
        return [stream_info_of(self.name, row) for row in rows]

    async def delete_stream(self, stream: str) -> None:
        with self._errors.mapping("deleting"):
            found = await self._db.pool.fetchval(DELETE_STREAM, stream)
        if not found:
            raise NotFound(f"stream {stream!r} does not exist")

    async def head_position(self) -> int:
        with self._errors.mapping("reading"):
            head = await self._db.pool.fetchval(READABLE_HEAD)
        return int(head or 0)

    async def wait_for_new(self, after: int, timeout: float) -> None:
        _ = self._db.pool  # ClosedError before start and after aclose
        if not self._listener.listening:
            await self._listener.start()
        await self._wakeup.wait(after, timeout)

    def _notified(self, payload: str) -> None:
        if payload.startswith("reset:"):  # a deletion erased the last events
            self._wakeup.reset(int(payload[6:]))
        else:
            self._wakeup.advance(int(payload))

    async def _caught_up(self) -> None:
        # Listening before reading the head: an append between the two is not missed.
        self._wakeup.advance(await self.head_position())

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._errors.mapping("writing"):
            await self._db.pool.execute(
                SAVE_SNAPSHOT,
                snapshot.stream,
                snapshot.version,
                snapshot.type,
                snapshot.data,
                snapshot.schema_version,
            )

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        with self._errors.mapping("reading"):
            row = await self._db.pool.fetchrow(
                "SELECT stream, version, type, data, schema_version FROM tidings_snapshots"
                " WHERE stream = $1",
                stream,
            )
        return None if row is None else Snapshot(*row)

    async def get_checkpoint(self, name: str) -> int:
        with self._errors.mapping("reading"):
            return await _get_checkpoint(self._db.pool, name)

    async def set_checkpoint(self, name: str, position: int) -> None:
        with self._errors.mapping("writing"):
            await self._db.pool.execute(SET_CHECKPOINT, name, position)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self._db.transaction() as connection:
            yield PostgresTransaction(connection)


class PostgresTransaction:
    """A transaction on a pooled connection (``connection`` is an asyncpg.Connection)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def set_checkpoint(self, name: str, position: int) -> None:
        await self.connection.execute(SET_CHECKPOINT, name, position)

    async def get_checkpoint(self, name: str) -> int:
        return await _get_checkpoint(self.connection, name)


def _as_is(recorded_at: datetime) -> datetime:
    return recorded_at  # asyncpg already returns timestamptz as an aware datetime


async def _get_checkpoint(connection: Any, name: str) -> int:
    position = await connection.fetchval(
        "SELECT position FROM tidings_checkpoints WHERE name = $1", name
    )
    return int(position or 0)
