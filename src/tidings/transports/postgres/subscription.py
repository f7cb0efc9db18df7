"""The PostgreSQL side of a subscription: one group's pending rows, a
:class:`~tidings.transports.kit.leased.Queue` (the kit's LeasedSubscription does the rest).

Claims lock candidate rows with ``FOR UPDATE SKIP LOCKED``, so competing subscriptions never wait
for each other. Per-key order needs one more rule than in SQLite, where claims are serialised: a
concurrent claimer may hold an earlier row of a key locked (skipped here) while it still looks
free. So a keyed row is leased only if every earlier row of its key that is not already leased to
this subscription is leased in this same claim (``prev`` chains them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tidings.sql.postgres import Postgres
from tidings.transports.kit.leased import Exchange, Row
from tidings.transports.kit.sharing import Share
from tidings.transports.postgres.wire import Schema, topic_regex

__all__ = ["PostgresQueue", "Watchers"]

_log = logging.getLogger("tidings.transports")
_PRUNE_EVERY = 10.0
_MARK_EVERY = 1.0
"""Seconds between notes that the group is active (``cursors.active_at``)."""

# A keyed row is a candidate only of the member whose share holds its key (kit.sharing; its
# key_hash in SQL).
_CANDIDATES = """
SELECT p.seq, p.key,
    CASE WHEN p.key IS NULL THEN NULL ELSE (
        SELECT max(h.seq) FROM {s}.pending AS h
        WHERE h.cursor = $1 AND h.key = p.key AND h.seq < p.seq
          AND NOT coalesce(h.owner = $3 AND h.lease_until >= $2, false)
    ) END
FROM {s}.pending AS p
WHERE p.cursor = $1 AND (p.lease_until IS NULL OR p.lease_until < $2) AND p.available_at <= $2
  AND (p.key IS NULL OR $5 = 1 OR ('x' || substr(md5(p.key), 1, 8))::bit(32)::bigint % $5 = $6)
ORDER BY p.seq LIMIT $4
FOR UPDATE OF p SKIP LOCKED
"""
_JOIN = """
INSERT INTO {s}.members (cursor, owner, until) VALUES ($1, $2, $3)
ON CONFLICT (cursor, owner) DO UPDATE SET until = excluded.until
"""
_EXPIRE = "DELETE FROM {s}.members WHERE cursor = $1 AND until < $2"
_LEAVE = "DELETE FROM {s}.members WHERE cursor = $1 AND owner = $2"
_MEMBERS = "SELECT owner FROM {s}.members WHERE cursor = $1 AND until >= $2"
# The BETWEEN bounds keep the index scan to the rows at hand even when the statistics of the
# fast-changing queue table say it is tiny (they often do).
_LEASE = """
UPDATE {s}.pending AS p SET lease_until = $3, owner = $4, attempts = p.attempts + 1
FROM {s}.log AS l
WHERE p.cursor = $1 AND p.seq BETWEEN $5 AND $6 AND p.seq = ANY($2::bigint[]) AND l.seq = p.seq
RETURNING p.seq, p.attempts, l.topic, l.id, l.type, l.key, l.headers, l.data, l.time
"""
_NEXT_DUE = """
SELECT min(CASE WHEN lease_until >= $2 THEN lease_until ELSE available_at END)
FROM {s}.pending
WHERE cursor = $1 AND owner IS DISTINCT FROM $3 AND (lease_until >= $2 OR available_at > $2)
"""
_ACK = (
    "DELETE FROM {s}.pending "
    "WHERE cursor = $1 AND seq BETWEEN $3 AND $4 AND seq = ANY($2::bigint[])"
)
_NACK = """
UPDATE {s}.pending AS p SET lease_until = NULL, owner = NULL, available_at = n.at
FROM unnest($2::bigint[], $3::float8[]) AS n (seq, at)
WHERE p.cursor = $1 AND p.seq BETWEEN $5 AND $6 AND p.seq = n.seq AND p.owner = $4
"""
_RENEW = (
    "UPDATE {s}.pending SET lease_until = $3 "
    "WHERE cursor = $1 AND seq BETWEEN $5 AND $6 AND owner = $2 AND seq = ANY($4::bigint[])"
)
# Handed out but never handled: not an attempt.
_RELEASE = (
    "UPDATE {s}.pending SET lease_until = NULL, owner = NULL, attempts = attempts - 1 "
    "WHERE cursor = $1 AND owner = $2"
)
# Log rows no pending row needs any more, once some group exists (a group created later starts
# with what is still kept). Shares the publishers' lock: cursor creation must not see it half done.
_PRUNE = """
WITH lock AS (SELECT pg_advisory_xact_lock_shared({lock}))
DELETE FROM {s}.log
WHERE seq < coalesce((SELECT min(seq) FROM {s}.pending), (SELECT max(seq) + 1 FROM {s}.log))
  AND EXISTS (SELECT 1 FROM {s}.cursors) AND EXISTS (SELECT 1 FROM lock)
"""


# Also tells whether the cursor still exists: ``tidings groups drop`` may have deleted it.
_MARK = "UPDATE {s}.cursors SET active_at = $2 WHERE id = $1"
# Taken first by a transaction that will prune or mark: cursor creation takes the lock alone and
# then rows of cursors, so taking rows first and the lock after would deadlock with it.
_SHARE_LOCK = "SELECT pg_advisory_xact_lock_shared({lock})"


class Watchers:
    """The wake-up events of a transport's waiting subscriptions, all set at once when messages
    may have arrived (a notification, a nack or lease given back in this process)."""

    __slots__ = ("_events",)

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def add(self, event: asyncio.Event) -> None:
        self._events.add(event)

    def discard(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    def ring(self) -> None:
        for event in self._events:
            event.set()


class PostgresQueue:
    """A :class:`~tidings.transports.kit.leased.Queue` in PostgreSQL."""

    def __init__(
        self, db: Postgres, schema: Schema, watchers: Watchers, topic: str, group: str
    ) -> None:
        self._db = db
        self._schema = schema
        self._watchers = watchers
        self._topic = topic
        self._group = group
        self._where = f"the queue of {group!r} on {topic!r}"
        self._cursor = 0
        self._prune_at = 0.0
        self._mark_at = 0.0
        self._beat_at = 0.0
        self._sql = {
            name: schema.sql(template)
            for name, template in [
                ("candidates", _CANDIDATES), ("lease", _LEASE), ("next_due", _NEXT_DUE),
                ("ack", _ACK), ("nack", _NACK), ("renew", _RENEW), ("release", _RELEASE),
                ("prune", _PRUNE), ("mark", _MARK), ("share_lock", _SHARE_LOCK),
                ("join", _JOIN), ("expire", _EXPIRE), ("leave", _LEAVE), ("members", _MEMBERS),
            ]
        }  # fmt: skip

    async def open(self) -> None:
        pattern = topic_regex(self._topic)
        sql = self._schema.sql("SELECT {s}.open_cursor($1, $2, $3)")

        async def create(conn: Any) -> int:
            return int(await conn.fetchval(sql, self._group, self._topic, pattern))

        self._cursor = await self._db.run(create, doing=f"opening {self._where}", retry=False)

    def watch(self, event: asyncio.Event) -> None:
        self._watchers.add(event)

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)

    async def exchange(self, exchange: Exchange) -> tuple[list[Row], float | None]:
        prune = exchange.want > 0 and exchange.now >= self._prune_at
        if prune:
            self._prune_at = exchange.now + _PRUNE_EVERY
        mark = exchange.want > 0 and exchange.now >= self._mark_at
        if mark:
            self._mark_at = exchange.now + _MARK_EVERY

        async def run(conn: Any) -> tuple[list[Row], float | None] | None:
            async with conn.transaction():
                if mark or prune:
                    await conn.execute(self._sql["share_lock"])
                if mark:
                    marked = await conn.execute(self._sql["mark"], self._cursor, exchange.now)
                    if marked == "UPDATE 0":
                        return None  # the group was dropped
                return await self._write(conn, exchange, prune)

        # Not retried here: the subscription looks again itself, with what it recorded since.
        result = await self._db.run(run, doing=f"updating {self._where}", retry=False)
        if exchange.nacks or exchange.release:
            self._watchers.ring()
        if result is None:
            _log.warning("group %r on %r was dropped; it starts again", self._group, self._topic)
            await self.open()
            return [], None
        return result

    async def _write(self, conn: Any, x: Exchange, prune: bool) -> tuple[list[Row], float | None]:
        sql, cursor = self._sql, self._cursor
        if x.acks:
            await conn.execute(sql["ack"], cursor, x.acks, min(x.acks), max(x.acks))
        if x.nacks:
            ats, seqs = zip(*x.nacks, strict=True)
            await conn.execute(
                sql["nack"], cursor, list(seqs), list(ats), x.owner, min(seqs), max(seqs)
            )
        if x.release:
            await conn.execute(sql["release"], cursor, x.owner)
        elif x.renew:
            await conn.execute(
                sql["renew"], cursor, x.owner, x.lease_until, x.renew, min(x.renew), max(x.renew)
            )
        if prune:
            await conn.execute(sql["prune"])
        await self._take_part(conn, x)
        if x.want <= 0:
            return [], None
        live = await conn.fetch(sql["members"], cursor, x.now)
        share = Share.of(x.owner, [member for (member,) in live])
        candidates = await conn.fetch(
            sql["candidates"], cursor, x.now, x.owner, x.want, share.members, share.rank
        )
        chosen = _in_key_order(candidates)
        if not chosen:
            return [], await conn.fetchval(sql["next_due"], cursor, x.now, x.owner)
        rows = await conn.fetch(
            sql["lease"], cursor, chosen, x.lease_until, x.owner, chosen[0], chosen[-1]
        )
        rows.sort(key=lambda row: row[0])
        return [tuple(row) for row in rows], None

    async def _take_part(self, conn: Any, x: Exchange) -> None:
        """Renew (at most every third of a lease, forgetting members that ran out) or end this
        subscription's membership of the group."""
        if x.leaving:
            await conn.execute(self._sql["leave"], self._cursor, x.owner)
        elif x.now >= self._beat_at:
            await conn.execute(self._sql["expire"], self._cursor, x.now)
            await conn.execute(self._sql["join"], self._cursor, x.owner, x.lease_until)
            self._beat_at = x.now + (x.lease_until - x.now) / 3


def _in_key_order(candidates: list[Any]) -> list[int]:
    """The candidate seqs that may be leased: every row without a key, and a keyed row only if
    the row of its key before it (not already ours) is leased in this claim too."""
    chosen: list[int] = []
    last: dict[str, int | None] = {}
    blocked: set[str] = set()
    for seq, key, prev in candidates:
        if key is None:
            chosen.append(seq)
        elif key not in blocked and prev == last.get(key):
            chosen.append(seq)
            last[key] = seq
        else:
            blocked.add(key)
    return chosen
