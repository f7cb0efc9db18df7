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
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from tidings.message import Message
from tidings.middleware import Handler, Middleware

__all__ = [
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
    """Handled ids in a set: for one process and for tests."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self._busy: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def transaction(self, key: str) -> AsyncIterator[InboxTransaction | None]:
        # a redelivery racing the first delivery of a key waits for its outcome
        lock, users = self._busy.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                if key in self.keys:
                    yield None
                    return
                yield _MemoryTransaction()
                self.keys.add(key)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._busy[key]


class _SqliteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


class SqliteInbox:
    """Handled ids in a table of a SQLite file, committed with the handler's own writes.

    ``synchronous=NORMAL`` (WAL) survives a process crash; FULL also survives power loss.

    Transactions take turns on one connection (SQLite has one writer at a time anyway), so
    deduplicated handlers of one inbox run one at a time.
    """

    def __init__(
        self, path: str, table: str = "tidings_inbox", synchronous: str = "NORMAL"
    ) -> None:
        if not table.isidentifier():
            raise ValueError(f"table must be a plain identifier: {table!r}")
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL (survives a process crash) or FULL")
        self.path = path
        self.table = table
        self.synchronous = synchronous.upper()
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=5000")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY)")
            self._connection = connection
        return self._connection

    @asynccontextmanager
    async def transaction(self, key: str) -> AsyncIterator[InboxTransaction | None]:
        async with self._lock:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(f"INSERT INTO {self.table} (key) VALUES (?)", (key,))
            except sqlite3.IntegrityError:
                connection.execute("ROLLBACK")
                yield None
                return
            try:
                yield _SqliteTransaction(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
