"""The SQLite transport's subscriptions: :class:`SqliteQueue` is the leased
:class:`~tidings.transports.kit.leased.Queue` in the file, one group's cursor on one topic (or
pattern); :class:`~tidings.transports.kit.leased.LeasedSubscription` and its ``LeasedDelivery``
do the rest (batches, settlements, lease renewal, outages), as for PostgreSQL.

One :meth:`SqliteQueue.exchange` is one job of the writer (see :mod:`tidings.sql.sqlite_writer`):
it writes the acks and nacks, renews or gives back leases, copies the next matching log rows
into the pending table and leases a batch, and now and then deletes the log rows no group needs
any more (see :mod:`tidings.transports.sqlite.wire` for the tables).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

import msgspec

from tidings.errors import ServiceUnavailable
from tidings.sql.sqlite import Database, Doorbell
from tidings.topics import is_pattern
from tidings.transports.kit.leased import Exchange, Row
from tidings.transports.kit.sharing import Share

__all__ = ["SqliteQueue"]

_log = logging.getLogger("tidings.transports")
_encode_ids = msgspec.json.Encoder().encode
_PRUNE_EVERY = 1.0
"""Seconds between deletions of log rows no group needs, while each deletes them all."""
_PRUNE_ROWS = 100_000
"""Most log rows deleted per transaction; after a full batch, the next fetch deletes more."""
_RECLAIM = 32 << 20
"""Most bytes given back at once (moving pages holds the write lock: some tens of ms)."""

_COPY_TOPIC = (
    "INSERT INTO tidings_pending (cursor, seq, key) SELECT ?, seq, key FROM tidings_log "
    "WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_COPY_PATTERN = (
    "INSERT INTO tidings_pending (cursor, seq, key) SELECT ?, seq, key FROM tidings_log "
    "WHERE tidings_match(?, topic) AND seq > ? ORDER BY seq LIMIT ?"
)
# A row is held back while an earlier row of its key is leased to another subscription or waits
# for its nack delay; earlier rows that are free come first in the same batch (ORDER BY seq).
# A keyed row is leased only by the member of the group whose share holds its key (kit.sharing).
# id, type and key come as bytes: SQLite does not check that text is UTF-8, and sqlite3 fails the
# whole query on a row of another program's that is not; from_wire decodes them, with fallbacks.
_CLAIM = """
SELECT p.seq, p.attempts + 1, l.topic, CAST(l.id AS BLOB), CAST(l.type AS BLOB),
    CAST(l.key AS BLOB), l.headers, l.data, l.time
FROM tidings_pending AS p JOIN tidings_log AS l ON l.seq = p.seq
WHERE p.cursor = :cursor
  AND (p.lease_until IS NULL OR p.lease_until < :now) AND p.available_at <= :now
  AND (p.key IS NULL OR :members = 1
       OR tidings_key_hash(CAST(p.key AS BLOB)) % :members = :rank)
  AND (p.key IS NULL OR NOT EXISTS (
      SELECT 1 FROM tidings_pending AS h
      WHERE h.cursor = :cursor AND h.key = p.key AND h.seq < p.seq
        AND CASE WHEN h.lease_until >= :now THEN h.owner != :owner
                 ELSE h.available_at > :now END))
ORDER BY p.seq LIMIT :want
"""
_LEASE = (
    "UPDATE tidings_pending SET lease_until = ?, owner = ?, attempts = attempts + 1 "
    "WHERE cursor = ? AND seq IN (SELECT value FROM json_each(?))"
)
_NEXT_DUE = """
SELECT min(CASE WHEN lease_until >= :now THEN lease_until ELSE available_at END)
FROM tidings_pending
WHERE cursor = :cursor AND owner IS NOT :owner AND (lease_until >= :now OR available_at > :now)
"""
_JOIN = (
    "INSERT INTO tidings_members (cursor, owner, until) VALUES (?, ?, ?) "
    "ON CONFLICT (cursor, owner) DO UPDATE SET until = excluded.until"
)
_EXPIRE = "DELETE FROM tidings_members WHERE cursor = ? AND until < ?"
_LEAVE = "DELETE FROM tidings_members WHERE cursor = ? AND owner = ?"
_MEMBERS = "SELECT owner FROM tidings_members WHERE cursor = ? AND until >= ?"
_ACK = "DELETE FROM tidings_pending WHERE cursor = ? AND seq IN (SELECT value FROM json_each(?))"
_NACK = (
    "UPDATE tidings_pending SET lease_until = NULL, owner = NULL, available_at = ? "
    "WHERE cursor = ? AND seq = ? AND owner = ?"
)
_RENEW = (
    "UPDATE tidings_pending SET lease_until = ? "
    "WHERE cursor = ? AND owner = ? AND seq IN (SELECT value FROM json_each(?))"
)
# Handed out but never handled: not an attempt.
_RELEASE = (
    "UPDATE tidings_pending SET lease_until = NULL, owner = NULL, attempts = attempts - 1 "
    "WHERE cursor = ? AND owner = ?"
)
_PRUNE = """
DELETE FROM tidings_log WHERE seq <= min(
    (SELECT min(position) FROM tidings_cursors),
    coalesce((SELECT min(seq) - 1 FROM tidings_pending), 1 << 62),
    (SELECT min(seq) FROM tidings_log) + :rows)
"""


class SqliteQueue:
    """A :class:`~tidings.transports.kit.leased.Queue` in a SQLite file."""

    def __init__(self, db: Database, spare: int, topic: str, group: str) -> None:
        """``spare``: bytes of free pages the file keeps for new rows when shrinking."""
        self._db = db
        self._spare = spare
        self._topic = topic
        self._group = group
        self._copy_sql = _COPY_PATTERN if is_pattern(topic) else _COPY_TOPIC
        self._cursor = 0
        self._prune_at = 0.0
        self._mark_at = 0.0
        self._beat_at = 0.0

    async def open(self) -> None:
        self._cursor = await self._db.write(self._create_cursor)

    def _create_cursor(self, conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO tidings_cursors (grp, topic, position) VALUES (?, ?, 0) "
            "ON CONFLICT (grp, topic) DO NOTHING",
            (self._group, self._topic),
        )
        row = conn.execute(
            "SELECT id FROM tidings_cursors WHERE grp = ? AND topic = ?",
            (self._group, self._topic),
        ).fetchone()
        return int(row[0])

    def watch(self, event: asyncio.Event) -> None:
        Doorbell.add(self._db.key, event)

    def unwatch(self, event: asyncio.Event) -> None:
        Doorbell.discard(self._db.key, event)

    async def exchange(self, exchange: Exchange) -> tuple[list[Row], float | None]:
        prune = exchange.want > 0 and exchange.now >= self._prune_at
        if prune and self._db.reclaims:
            # What the previous prunes freed; before the exchange, whose leases must not be lost
            # to a failure here. Best effort: a file locked right now is shrunk next time.
            with contextlib.suppress(ServiceUnavailable):
                await self._db.writer.outside(self._reclaim)

        def run(conn: sqlite3.Connection) -> tuple[list[Row], float | None, int]:
            return self._write(conn, exchange, prune)

        rows, due, pruned = await self._db.write(run)
        if prune:
            self._prune_at = exchange.now + (0 if pruned >= _PRUNE_ROWS else _PRUNE_EVERY)
        if exchange.nacks or exchange.release:
            Doorbell.ring(self._db.key)  # the waiting subscriptions look again
        return rows, due

    def _reclaim(self, conn: sqlite3.Connection) -> None:
        """Give the free pages beyond the file's spare space back to the file system (at most
        :data:`_RECLAIM` bytes at once); the file shrinks at the next checkpoint."""
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        (page,) = conn.execute("PRAGMA page_size").fetchone()
        surplus = min(free - self._spare // page, _RECLAIM // page)
        if surplus > 0:
            # executescript runs the pragma to its end; execute() would free a single page
            conn.executescript(f"PRAGMA incremental_vacuum({surplus})")

    def _write(
        self, conn: sqlite3.Connection, x: Exchange, prune: bool
    ) -> tuple[list[Row], float | None, int]:
        """The exchange's writes and leases, and how many log rows the prune deleted."""
        cursor, owner = self._cursor, x.owner
        if x.acks:
            conn.execute(_ACK, (cursor, _encode_ids(x.acks).decode()))
        if x.nacks:
            conn.executemany(_NACK, [(at, cursor, seq, owner) for at, seq in x.nacks])
        if x.release:
            conn.execute(_RELEASE, (cursor, owner))
        elif x.renew:
            conn.execute(_RENEW, (x.lease_until, cursor, owner, _encode_ids(x.renew).decode()))
        pruned = conn.execute(_PRUNE, {"rows": _PRUNE_ROWS}).rowcount if prune else 0
        if x.want <= 0:
            self._take_part(conn, x, cursor)
            return [], None, pruned
        cursor = self._copy(conn, x.want, x.now)
        self._take_part(conn, x, cursor)
        live = conn.execute(_MEMBERS, (cursor, x.now)).fetchall()
        share = Share.of(owner, [member for (member,) in live])
        params = {
            "cursor": cursor, "owner": owner, "now": x.now, "want": x.want,
            "members": share.members, "rank": share.rank,
        }  # fmt: skip
        rows = conn.execute(_CLAIM, params).fetchall()
        if not rows:
            return rows, conn.execute(_NEXT_DUE, params).fetchone()[0], pruned
        seqs = _encode_ids([row[0] for row in rows]).decode()
        conn.execute(_LEASE, (x.lease_until, owner, cursor, seqs))
        return rows, None, pruned

    def _take_part(self, conn: sqlite3.Connection, x: Exchange, cursor: int) -> None:
        """Renew (at most every third of a lease, forgetting members that ran out) or end this
        subscription's membership of the group."""
        if x.leaving:
            conn.execute(_LEAVE, (cursor, x.owner))
        elif x.now >= self._beat_at:
            conn.execute(_EXPIRE, (cursor, x.now))
            conn.execute(_JOIN, (cursor, x.owner, x.lease_until))
            self._beat_at = x.now + (x.lease_until - x.now) / 3

    def _copy(self, conn: sqlite3.Connection, want: int, now: float) -> int:
        """Move the cursor over up to ``want`` new matching log rows, into the pending table,
        and note the group active (at most once a second); returns the cursor's id (new if the
        group was dropped meanwhile: it starts again as a new group)."""
        cursor = self._cursor
        row = conn.execute(
            "SELECT position FROM tidings_cursors WHERE id = ?", (cursor,)
        ).fetchone()
        if row is None:
            _log.warning("group %r on %r was dropped; it starts again", self._group, self._topic)
            cursor = self._cursor = self._create_cursor(conn)
            row = (0,)
        (position,) = row
        copied = conn.execute(self._copy_sql, (cursor, self._topic, position, want)).rowcount
        if copied < want:  # nothing more matches up to the head of the log
            (new,) = conn.execute(
                "SELECT coalesce(max(seq), ?) FROM tidings_log", (position,)
            ).fetchone()
        else:
            (new,) = conn.execute(
                "SELECT max(seq) FROM tidings_pending WHERE cursor = ?", (cursor,)
            ).fetchone()
        if new != position or now >= self._mark_at:
            conn.execute(
                "UPDATE tidings_cursors SET position = ?, active_at = ? WHERE id = ?",
                (new, now, cursor),
            )
            self._mark_at = now + 1
        return cursor
