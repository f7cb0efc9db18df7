"""Publishing to the SQLite transport: the messages of one call are appended to the log in one
transaction (shared with the other writes of the same loop turn: see
:mod:`tidings.sql.sqlite_writer`), then this process's subscriptions on the file are woken."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tidings.message import Message
from tidings.sql.sqlite import Database, Doorbell
from tidings.transports.sqlite.wire import INSERT, log_rows

__all__ = ["append"]


async def append(db: Database, topic: str, messages: Sequence[Message]) -> None:
    """Append ``messages`` to the log, in order, all or nothing.

    Raises ServiceUnavailable when another connection held the write lock for ``busy_timeout``
    seconds, TransportError when the database fails (nothing of the call is stored then). A
    call cancelled while it waits for the lock is not stored, unless the lock came free first.
    """
    rows = log_rows(topic, messages)

    def insert(conn: sqlite3.Connection) -> None:
        conn.executemany(INSERT, rows)

    await db.write(insert)
    Doorbell.ring(db.key)
