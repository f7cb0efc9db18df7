"""The PostgreSQL connections of the transport: a pool, a LISTEN connection, the schema.

Every call goes through :meth:`Database.run`, which maps asyncpg's errors at the boundary: lost or
refused connections (a server restart) are retried for up to ``reconnect_timeout`` seconds and then
raised as :class:`ServiceUnavailable`; other database errors as :class:`TransportError`. The LISTEN
connection reconnects by itself and wakes every watcher when it is back (notifications sent while
it was away are lost, so everyone looks again).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from tidings.errors import ClosedError, ServiceUnavailable, TransportError

if TYPE_CHECKING:
    from tidings.transports.postgres import PostgresOptions

__all__ = ["Database"]

T = TypeVar("T")
_log = logging.getLogger("tidings.transports.postgres")

_GONE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
)
"""Errors that mean the server went away or is not accepting clients (yet)."""

_SETTINGS = {"enable_bitmapscan": "off", "plan_cache_mode": "force_custom_plan", "jit": "off"}
"""For the pool's connections, which run only this module's short index lookups: the statistics
of a fast-changing queue table are mostly stale, and a bitmap scan or generic plan chosen on them
reads and sorts the whole queue for every claim. (``fillfactor`` leaves room for lease updates
to stay on their page.)"""

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.log (
    seq bigserial PRIMARY KEY,
    topic text NOT NULL,
    id text NOT NULL,
    type text NOT NULL,
    key text,
    headers bytea,
    data bytea NOT NULL,
    time float8 NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.cursors (
    id serial PRIMARY KEY,
    grp text NOT NULL,
    topic text NOT NULL,
    pattern text NOT NULL,
    UNIQUE (grp, topic)
);
-- Only when missing (a schema of an earlier version): ALTER TABLE locks the table whole even
-- when the column exists, which deadlocks with the publishers of a running transport.
DO $$ BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = '{s}.cursors'::regclass AND attname = 'active_at' AND NOT attisdropped
    ) THEN
        ALTER TABLE {s}.cursors ADD COLUMN active_at float8;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS {s}.pending (
    cursor int NOT NULL,
    seq bigint NOT NULL,
    key text,
    attempts int NOT NULL DEFAULT 0,
    available_at float8 NOT NULL DEFAULT 0,
    lease_until float8,
    owner text,
    PRIMARY KEY (cursor, seq)
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS pending_key ON {s}.pending (cursor, key, seq) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.dead_letters (
    n bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    message_id text NOT NULL,
    topic text NOT NULL,
    type text NOT NULL,
    grp text NOT NULL,
    data bytea NOT NULL,
    headers bytea NOT NULL,
    key text,
    error_type text NOT NULL,
    error_message text NOT NULL,
    traceback text NOT NULL,
    attempts int NOT NULL,
    failed_at float8 NOT NULL,
    published_at float8 NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_topic ON {s}.dead_letters (topic, n);

-- Publishing fans a message out to the pending rows of every cursor whose pattern matches. The
-- shared lock keeps cursor creation (exclusive: it copies the history) from missing a message
-- committed meanwhile; each statement of this volatile function sees the cursors as of after it.
CREATE OR REPLACE FUNCTION {s}.publish(
    p_topic text, p_ids text[], p_types text[], p_keys text[], p_headers bytea[],
    p_data bytea[], p_times float8[], p_channel text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({lock});
    WITH m AS (
        INSERT INTO {s}.log (topic, id, type, key, headers, data, time)
        SELECT p_topic, u.id, u.type, u.key, u.headers, u.data, u.time
        FROM unnest(p_ids, p_types, p_keys, p_headers, p_data, p_times)
            WITH ORDINALITY AS u (id, type, key, headers, data, time, n)
        ORDER BY u.n
        RETURNING seq, key
    )
    INSERT INTO {s}.pending (cursor, seq, key)
    SELECT c.id, m.seq, m.key FROM m CROSS JOIN {s}.cursors AS c WHERE p_topic ~ c.pattern;
    PERFORM pg_notify(p_channel, left(p_topic, 1000));
END $$;

CREATE OR REPLACE FUNCTION {s}.open_cursor(p_grp text, p_topic text, p_pattern text)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    cid int;
BEGIN
    SELECT id INTO cid FROM {s}.cursors WHERE grp = p_grp AND topic = p_topic;
    IF cid IS NOT NULL THEN
        RETURN cid;
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    INSERT INTO {s}.cursors (grp, topic, pattern) VALUES (p_grp, p_topic, p_pattern)
    ON CONFLICT (grp, topic) DO NOTHING RETURNING id INTO cid;
    IF cid IS NULL THEN
        SELECT id INTO cid FROM {s}.cursors WHERE grp = p_grp AND topic = p_topic;
        RETURN cid;
    END IF;
    -- A new group starts with the history still kept.
    INSERT INTO {s}.pending (cursor, seq, key)
    SELECT cid, seq, key FROM {s}.log WHERE topic ~ p_pattern;
    RETURN cid;
END $$;
"""


class Database:
    """The pool and the LISTEN connection of one transport (opened by :meth:`open`)."""

    def __init__(self, options: PostgresOptions) -> None:
        self.options = options
        self.schema = options.schema
        self.channel = f"tidings_{options.schema}"
        # One advisory lock per schema: publishers share it, cursor creation takes it alone.
        self.lock_key = zlib.crc32(f"tidings:{options.schema}".encode())
        parts = urlsplit(options.dsn)
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Event] = set()
        self._opening = asyncio.Lock()
        self._closed = False

    def sql(self, template: str) -> str:
        """``template`` with ``{s}`` as the schema and ``{lock}`` as the advisory lock key."""
        return template.format(s=f'"{self.schema}"', lock=self.lock_key)

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"the PostgreSQL transport at {self.where} is closed")
        async with self._opening:
            if self._pool is not None:
                return
            try:
                pool = await asyncpg.create_pool(
                    self.options.dsn,
                    min_size=1,
                    max_size=self.options.pool_size,
                    server_settings=_SETTINGS,
                )
            except _GONE as exc:
                raise self._unavailable(exc) from exc
            except asyncpg.PostgresError as exc:
                raise TransportError(f"PostgreSQL at {self.where}: {exc}") from exc
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tidings.schema'))")
                    await conn.execute(self.sql(_SCHEMA))
            except BaseException:
                await pool.close()
                raise
            self._pool = pool
            await self._listen()

    def _unavailable(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable(f"PostgreSQL is not reachable at {self.where}: {exc}")

    async def run(self, fn: Callable[[Any], Awaitable[T]], *, retry: bool = True) -> T:
        """``await fn(connection)``; with ``retry``, again while the server is unreachable."""
        if self._pool is None:
            await self.open()
        deadline = time.monotonic() + self.options.reconnect_timeout
        while True:
            if self._closed or self._pool is None:
                raise ClosedError(f"the PostgreSQL transport at {self.where} is closed")
            try:
                async with self._pool.acquire() as conn:
                    return await fn(conn)
            except _GONE as exc:
                if self._closed:
                    raise ClosedError(f"the PostgreSQL transport at {self.where} closed") from exc
                if not retry or time.monotonic() > deadline:
                    raise self._unavailable(exc) from exc
            except asyncpg.PostgresError as exc:
                raise TransportError(f"PostgreSQL at {self.where}: {exc}") from exc
            await asyncio.sleep(0.2)  # the server is restarting: try again shortly

    # -- notifications ------------------------------------------------------------------------

    def watch(self, event: asyncio.Event) -> None:
        self._watchers.add(event)

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)

    def ring(self, *_: object) -> None:
        for event in self._watchers:
            event.set()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.options.dsn)
        await conn.add_listener(self.channel, self.ring)
        conn.add_termination_listener(self._lost)
        self._listener = conn

    def _lost(self, conn: object) -> None:
        self._listener = None
        if not self._closed and self._relisten is None:
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        try:
            while not self._closed:
                try:
                    await self._listen()
                except _GONE as exc:
                    _log.debug("LISTEN connection to %s failed, trying again: %s", self.where, exc)
                    await asyncio.sleep(0.5)
                else:
                    self.ring()  # notifications may have been missed meanwhile
                    return
        finally:
            self._relisten = None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._relisten is not None:
            self._relisten.cancel()
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            await listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
