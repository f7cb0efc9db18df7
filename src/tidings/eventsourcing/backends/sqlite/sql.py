"""SQL of the SQLite event store: its tables, and the statements it shares with its
transactions."""

from __future__ import annotations

import sqlite3

from tidings.errors import NotFound
from tidings.eventsourcing.store import Snapshot, StreamDeleted
from tidings.sql.sqlite import Schema, fetch

__all__ = [
    "INSERT_COMMIT",
    "READABLE_HEAD",
    "READ_ALL",
    "READ_BACKWARD",
    "READ_FORWARD",
    "SCHEMA",
    "get_checkpoint",
    "live_stream_id",
    "save_snapshot",
    "set_checkpoint",
    "stream_row",
]

TABLES = """
CREATE TABLE IF NOT EXISTS tidings_streams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    metadata BLOB
);
CREATE TABLE IF NOT EXISTS tidings_commits (
    position INTEGER PRIMARY KEY,   -- of the commit's last event
    stream_id INTEGER NOT NULL,
    version INTEGER NOT NULL,       -- of the commit's last event
    count INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    events BLOB                     -- NULL once erased
);
CREATE UNIQUE INDEX IF NOT EXISTS tidings_commits_stream ON tidings_commits (stream_id, version);
CREATE TABLE IF NOT EXISTS tidings_snapshots (
    stream TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    schema_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tidings_checkpoints (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""

SCHEMA = Schema(TABLES, pragmas=["secure_delete = ON"])
"""Erased payloads are overwritten, not left in free pages (see ``delete_stream``)."""

# Erased rows (events IS NULL) are those of deleted streams: filtering them hides the stream.
READ_FORWARD = (
    "SELECT version, position, count, recorded_at, events FROM tidings_commits"
    " WHERE stream_id = ? AND version >= ? AND events IS NOT NULL ORDER BY version LIMIT ?"
)
READ_BACKWARD = (
    "SELECT version, position, count, recorded_at, events FROM tidings_commits"
    " WHERE stream_id = ? AND version - count < ? AND events IS NOT NULL"
    " ORDER BY version DESC LIMIT ?"
)
READ_ALL = (
    "SELECT s.name, c.version, c.position, c.count, c.recorded_at, c.events"
    " FROM tidings_commits AS c JOIN tidings_streams AS s ON s.id = c.stream_id"
    " WHERE c.position > ? AND c.events IS NOT NULL ORDER BY c.position LIMIT ?"
)
READABLE_HEAD = (
    "SELECT position FROM tidings_commits WHERE events IS NOT NULL ORDER BY position DESC LIMIT 1"
)
INSERT_COMMIT = (
    "INSERT INTO tidings_commits SELECT coalesce(max(position), 0) + ?, ?, ?, ?, ?, ?"
    " FROM tidings_commits"
)


def stream_row(connection: sqlite3.Connection, stream: str) -> tuple[int, bool]:
    """``(id, deleted)`` of ``stream``; raises NotFound for a stream never written."""
    row = connection.execute(
        "SELECT id, deleted FROM tidings_streams WHERE name = ?", (stream,)
    ).fetchone()
    if row is None:
        raise NotFound(f"stream {stream!r} does not exist")
    return int(row[0]), bool(row[1])


def live_stream_id(connection: sqlite3.Connection, stream: str) -> int:
    """The id of ``stream``; raises NotFound, or StreamDeleted for a deleted stream."""
    stream_id, deleted = stream_row(connection, stream)
    if deleted:
        raise StreamDeleted(stream)
    return stream_id


def save_snapshot(connection: sqlite3.Connection, snapshot: Snapshot) -> None:
    row = connection.execute(
        "SELECT deleted FROM tidings_streams WHERE name = ?", (snapshot.stream,)
    ).fetchone()
    if row is not None and row[0]:
        return  # a snapshot would bring erased state back
    connection.execute(
        "INSERT INTO tidings_snapshots VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream) DO UPDATE"
        " SET version = excluded.version, type = excluded.type, data = excluded.data,"
        " schema_version = excluded.schema_version"
        " WHERE excluded.version >= tidings_snapshots.version",
        (snapshot.stream, snapshot.version, snapshot.type, snapshot.data, snapshot.schema_version),
    )


def get_checkpoint(connection: sqlite3.Connection, name: str, *, store: str) -> int:
    sql = "SELECT position FROM tidings_checkpoints WHERE name = ?"
    rows = fetch(connection, sql, (name,), name=store)
    return int(rows[0][0]) if rows else 0


def set_checkpoint(connection: sqlite3.Connection, name: str, position: int) -> None:
    connection.execute(
        "INSERT INTO tidings_checkpoints VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        (name, position),
    )
