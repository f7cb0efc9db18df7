"""The SQLite transport's file layout: its tables, the upgrade of files made by earlier
versions, the SQL function that matches topic patterns, and the file opened with them.

Tables: ``tidings_log`` (every message, by ``seq``), ``tidings_cursors`` (a position in the log
per group and topic pattern), ``tidings_pending`` (per cursor, the messages copied from the log
and not yet acknowledged, with their lease, attempts and nack delay), ``tidings_members`` (per
cursor, the live subscriptions that share its keys: see :mod:`tidings.transports.kit.sharing`)
and ``tidings_dead_letters``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from tidings.message import Message
from tidings.sql.sqlite import Database, Schema, Synchronous
from tidings.topics import matches
from tidings.transports.kit.sharing import key_hash

__all__ = ["INSERT", "SCHEMA", "log_rows", "open_file"]

TABLES = """
CREATE TABLE IF NOT EXISTS tidings_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    key TEXT,
    headers BLOB,
    data BLOB NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tidings_log_topic ON tidings_log (topic, seq);
CREATE TABLE IF NOT EXISTS tidings_cursors (
    id INTEGER PRIMARY KEY,
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    position INTEGER NOT NULL,
    active_at REAL,
    UNIQUE (grp, topic)
);
CREATE TABLE IF NOT EXISTS tidings_pending (
    cursor INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL DEFAULT 0,
    lease_until REAL,
    owner TEXT,
    PRIMARY KEY (cursor, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tidings_pending_key
    ON tidings_pending (cursor, key, seq) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS tidings_members (
    cursor INTEGER NOT NULL,
    owner TEXT NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (cursor, owner)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidings_dead_letters (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    type TEXT NOT NULL,
    grp TEXT NOT NULL,
    data BLOB NOT NULL,
    headers BLOB NOT NULL,
    key TEXT,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    published_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tidings_dead_letters_topic ON tidings_dead_letters (topic, n);
"""


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add what files made by earlier versions lack."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tidings_cursors)")}
    if "active_at" not in columns:
        conn.execute("ALTER TABLE tidings_cursors ADD COLUMN active_at REAL")


def _matches(pattern: str, topic: object) -> bool:
    """``matches`` for SQL: a row another program wrote may hold a topic that is not text (a
    blob, a number); it is read as text, so one odd row never fails the whole query."""
    if isinstance(topic, bytes):
        topic = topic.decode(errors="replace")
    return matches(pattern, topic if isinstance(topic, str) else str(topic))


def _key_hash(key: object) -> int | None:
    """``key_hash`` for SQL, of a key read as bytes (NULL for none)."""
    return key_hash(key) if isinstance(key, bytes) else None


SCHEMA = Schema(
    TABLES,
    upgrade=_upgrade,
    functions=[("tidings_match", 2, _matches), ("tidings_key_hash", 1, _key_hash)],
    incremental_vacuum=True,
)


def open_file(
    path: str, *, busy_timeout: float = 5.0, synchronous: Synchronous = "NORMAL"
) -> Database:
    """The transport's database on ``path`` (opened by its :meth:`~Database.open`)."""
    return Database(
        path, SCHEMA, name=f"SQLite file {path!r}", synchronous=synchronous,
        busy_timeout=busy_timeout,
    )  # fmt: skip


_encode_headers = msgspec.json.Encoder().encode

INSERT = (
    "INSERT INTO tidings_log (topic, id, type, key, headers, data, time) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
"""One message as a log row; parameters from :func:`log_rows`. (Rows are read back by the
subscriptions through :func:`~tidings.transports.kit.wire.from_wire`, which takes rows other
programs wrote too.)"""


def log_rows(topic: str, messages: Sequence[Message]) -> list[tuple[object, ...]]:
    """The parameters of :data:`INSERT` for each message; headers as a JSON object (or NULL)."""
    return [
        (
            topic,
            m.id,
            m.type,
            m.key,
            _encode_headers(m.headers) if m.headers else None,
            m.data,
            m.timestamp,
        )
        for m in messages
    ]
