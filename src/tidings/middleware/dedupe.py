"""Idempotent consumers: handle each message id once, even when it is delivered again.

At-least-once delivery redelivers a message whose ack was lost (a crash after the handler, a
broker restart). ``dedupe(inbox)`` records each handled message id in an inbox and skips ids it
has seen. For effects that must happen exactly once, write them through the inbox's transaction
(:func:`inbox_transaction`): the effect and the record of the id then commit together, or not
at all::

    inbox = SqliteInbox("app.db")

    async def record_signup(event: UserSignedUp) -> None:
        inbox_transaction().connection.execute("INSERT INTO users ...")

    bus.subscribe(UserSignedUp, record_signup, middleware=[dedupe(inbox, scope="users")])

An inbox does not remember ids for ever: each is kept ``keep`` seconds after it was recorded
(:data:`DEFAULT_KEEP`, a week, unless told otherwise), and at most ``max_ids`` of them, the
newest (a million in memory by default; no count bound in SQLite unless given). Older ids are
forgotten a few at a time as new ones are recorded, so a duplicate that arrives after that is
handled again: choose ``keep`` longer than any redelivery you expect (a consumer down for a
while, a dead letter replayed later).
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator, KeysView
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from tidings.clock import Clock, SystemClock
from tidings.message import Message
from tidings.middleware import Handler, Middleware

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_IDS",
    "Inbox",
    "InboxTransaction",
    "MemoryInbox",
    "SqliteInbox",
    "dedupe",
    "inbox_transaction",
]


class InboxTransaction(Protocol):
    """The transaction that records a message id; ``connection`` is the inbox's database
    connection (None in memory), for effects that must commit with the record."""

    connection: Any


class Inbox(Protocol):
    def transaction(self, key: str) -> AbstractAsyncContextManager[InboxTransaction | None]:
        """Yield None when ``key`` was handled before; else a transaction that records ``key``
        when the block exits normally and records nothing when it raises."""
        ...


DEFAULT_KEEP = 7 * 24 * 3600.0
"""Seconds an inbox remembers a handled id unless told otherwise: a week."""

DEFAULT_MAX_IDS = 1_000_000
"""How many ids a :class:`MemoryInbox` remembers unless told otherwise."""


def _check_retention(keep: float, max_ids: int | None) -> None:
    if not keep > 0:  # also refuses NaN
        raise ValueError(f"keep must be a positive number of seconds, not {keep!r}")
    if max_ids is not None and max_ids < 1:
        raise ValueError(f"max_ids must be at least 1 (or None for no bound), not {max_ids!r}")


_current: contextvars.ContextVar[InboxTransaction] = contextvars.ContextVar("tidings_inbox")


def inbox_transaction() -> InboxTransaction:
    """The inbox transaction of the message being handled (inside a ``dedupe`` handler)."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("inbox_transaction() works only inside a dedupe handler") from None


def dedupe(inbox: Inbox, *, scope: str = "") -> Middleware:
    """Skip messages whose id ``inbox`` has recorded under ``scope`` (one scope per consumer
    group, so groups dedupe independently)."""

    def wrap(handler: Handler) -> Handler:
        async def once(message: Message) -> None:
            async with inbox.transaction(f"{scope}:{message.id}") as tx:
                if tx is None:
                    return
                token = _current.set(tx)
                try:
                    await handler(message)
                finally:
                    _current.reset(token)

        return once

    return wrap


class _MemoryTransaction:
    connection = None


class MemoryInbox:
    """Handled ids in memory: for one process and for tests.

    Remembers each id ``keep`` seconds (by ``clock``) and the newest ``max_ids`` ids (None: no
    count bound), over all scopes; see the module docstring for what forgetting means.
    """

    def __init__(
        self,
        *,
        keep: float = DEFAULT_KEEP,
        max_ids: int | None = DEFAULT_MAX_IDS,
        clock: Clock | None = None,
    ) -> None:
        _check_retention(keep, max_ids)
        self.keep = keep
        self.max_ids = max_ids
        self._clock = clock or SystemClock()
        # id -> time recorded, oldest first; OrderedDict pops its oldest in O(1), a dict does not
        self._recorded: OrderedDict[str, float] = OrderedDict()
        self._busy: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @property
    def keys(self) -> KeysView[str]:
        """The ids remembered, oldest first."""
        return self._recorded.keys()

    @asynccontextmanager
    async def transaction(self, key: str) -> AsyncIterator[InboxTransaction | None]:
        # a redelivery racing the first delivery of a key waits for its outcome
        lock, users = self._busy.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                self._forget_expired()
                if key in self._recorded:
                    yield None
                    return
                yield _MemoryTransaction()
                self._record(key)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._busy[key]

    def _forget_expired(self) -> None:
        recorded = self._recorded
        horizon = self._clock.now() - self.keep
        while recorded and next(iter(recorded.values())) < horizon:
            recorded.popitem(last=False)

    def _record(self, key: str) -> None:
        self._recorded[key] = self._clock.now()
        if self.max_ids is not None and len(self._recorded) > self.max_ids:
            self._recorded.popitem(last=False)


class _SqliteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


_PRUNE_EVERY = 16
"""A SQLite inbox forgets old ids once every this many ids it records (the first included):
one statement for many ids, and up to twice as many ids as were recorded meanwhile, so a
backlog beyond the bounds shrinks without one message paying for all of it."""

_NO_BOUND = 1 << 62  # max_ids=None: no rowid is this far below the newest


class SqliteInbox:
    """Handled ids in a table of a SQLite file, committed with the handler's own writes.

    ``synchronous=NORMAL`` (WAL) survives a process crash; FULL also survives power loss.

    Remembers each id ``keep`` seconds (by ``clock``) and, when ``max_ids`` is given, the newest
    ``max_ids`` ids of the table (all scopes); see the module docstring. Old ids are deleted
    once every 16 ids recorded, so an id may be remembered a little longer than ``keep`` and
    the table may hold up to 15 more than ``max_ids``. Ids recorded before the table had a
    time (an earlier version of tidings) count from the first connection.

    Transactions take turns on one connection (SQLite has one writer at a time anyway), so
    deduplicated handlers of one inbox run one at a time.
    """

    def __init__(
        self,
        path: str,
        table: str = "tidings_inbox",
        synchronous: str = "NORMAL",
        *,
        keep: float = DEFAULT_KEEP,
        max_ids: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not table.isidentifier():
            raise ValueError(f"table must be a plain identifier: {table!r}")
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL (survives a process crash) or FULL")
        _check_retention(keep, max_ids)
        self.path = path
        self.table = table
        self.synchronous = synchronous.upper()
        self.keep = keep
        self.max_ids = max_ids
        self._clock = clock or SystemClock()
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._recorded = 0

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA busy_timeout=5000")
                connection.execute(f"PRAGMA synchronous={self.synchronous}")
                self._create_table(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _create_table(self, connection: sqlite3.Connection) -> None:
        table = self.table
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table}"
                " (key TEXT PRIMARY KEY, recorded_at REAL NOT NULL)"
            )
            columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if "recorded_at" not in columns:  # made by an earlier version: its ids count from now
                connection.execute(
                    f"ALTER TABLE {table} ADD COLUMN recorded_at REAL NOT NULL DEFAULT 0"
                )
                connection.execute(f"UPDATE {table} SET recorded_at = ?", (self._clock.now(),))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @asynccontextmanager
    async def transaction(self, key: str) -> AsyncIterator[InboxTransaction | None]:
        async with self._lock:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            if not self._record(connection, key):
                connection.execute("ROLLBACK")
                yield None
                return
            try:
                yield _SqliteTransaction(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _record(self, connection: sqlite3.Connection, key: str) -> bool:
        """Record ``key`` and forget a few old ids; False when ``key`` is remembered."""
        now = self._clock.now()
        try:
            connection.execute(
                f"INSERT INTO {self.table} (key, recorded_at) VALUES (?, ?)", (key, now)
            )
        except sqlite3.IntegrityError:
            return False
        if not self._recorded % _PRUNE_EVERY:
            self._forget_old(connection, now)
        self._recorded += 1
        return True

    def _forget_old(self, connection: sqlite3.Connection, now: float) -> None:
        # The oldest ids have the lowest rowids (each new id takes the highest plus one): a few
        # are looked at, the expired and those max_ids or more below the newest deleted. No
        # index on the time: one would cost each record an extra page written.
        table = self.table
        connection.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY rowid"
            f" LIMIT ?) AND (recorded_at < ? OR rowid <= (SELECT max(rowid) FROM {table}) - ?)",
            (2 * _PRUNE_EVERY, now - self.keep, self.max_ids or _NO_BOUND),
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
