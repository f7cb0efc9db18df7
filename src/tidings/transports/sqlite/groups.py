"""The consumer groups of a SQLite file: one row of ``tidings_cursors`` per group and topic.

A group's lag is what it has pending (copied from the log, not acknowledged) plus the matching
log rows past its cursor. Dropping a group deletes its cursor and pending rows, so the log rows
it alone held are deleted by the next prune.
"""

from __future__ import annotations

import sqlite3

from tidings.errors import NotFound
from tidings.topics import is_pattern
from tidings.transports.base import GroupInfo

__all__ = ["drop_group", "list_groups"]

_CURSORS = """
SELECT c.id, c.topic, c.grp, c.position, c.active_at,
    (SELECT count(*) FROM tidings_pending AS p WHERE p.cursor = c.id),
    (SELECT count(*) FROM tidings_pending AS p WHERE p.cursor = c.id AND p.lease_until >= ?)
FROM tidings_cursors AS c ORDER BY c.topic, c.grp
"""
_AHEAD_TOPIC = "SELECT count(*) FROM tidings_log WHERE topic = ? AND seq > ?"
_AHEAD_PATTERN = "SELECT count(*) FROM tidings_log WHERE tidings_match(?, topic) AND seq > ?"


def list_groups(now: float, conn: sqlite3.Connection) -> list[GroupInfo]:
    """Every group, sorted by topic then group; ``now`` tells leases in force. Reads only (on
    the reader: never waits for a write lock); the counts may be a moment apart."""
    groups = []
    cursors = conn.execute(_CURSORS, (now,)).fetchall()
    for _, topic, group, position, active_at, pending, leased in cursors:
        ahead_sql = _AHEAD_PATTERN if is_pattern(topic) else _AHEAD_TOPIC
        (ahead,) = conn.execute(ahead_sql, (topic, position)).fetchone()
        groups.append(GroupInfo(topic, group, pending + ahead, leased, active_at))
    return groups


def drop_group(topic: str, group: str, conn: sqlite3.Connection) -> None:
    """Delete ``group``'s cursor on ``topic``, its pending rows and members; raises NotFound (before
    writing anything). A job of the writer."""
    row = conn.execute(
        "SELECT id FROM tidings_cursors WHERE grp = ? AND topic = ?", (group, topic)
    ).fetchone()
    if row is None:
        raise NotFound(f"no group {group!r} on {topic!r}")
    conn.execute("DELETE FROM tidings_pending WHERE cursor = ?", row)
    conn.execute("DELETE FROM tidings_members WHERE cursor = ?", row)
    conn.execute("DELETE FROM tidings_cursors WHERE id = ?", row)
