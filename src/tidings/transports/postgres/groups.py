"""The consumer groups of a PostgreSQL schema: one row of ``cursors`` per group and topic.

Publishing fans each message out to a pending row per matching cursor, so a group's lag is its
count of pending rows. Dropping a group deletes its cursor and pending rows under the
publishers' lock (taken alone, as when a cursor is created), so no publish adds rows for it
afterwards; the log rows only it held go with the next prune.
"""

from __future__ import annotations

from typing import Any

from tidings.errors import NotFound
from tidings.sql.postgres import Postgres
from tidings.transports.base import GroupInfo
from tidings.transports.postgres.wire import Schema

__all__ = ["drop_group", "list_groups"]

_LIST = """
SELECT c.topic, c.grp, c.active_at,
    (SELECT count(*) FROM {s}.pending AS p WHERE p.cursor = c.id),
    (SELECT count(*) FROM {s}.pending AS p WHERE p.cursor = c.id AND p.lease_until >= $1)
FROM {s}.cursors AS c ORDER BY c.topic COLLATE "C", c.grp COLLATE "C"
"""


async def list_groups(db: Postgres, schema: Schema, now: float) -> list[GroupInfo]:
    """Every group, sorted by topic then group; ``now`` tells leases in force."""
    sql = schema.sql(_LIST)

    async def fetch(conn: Any) -> list[GroupInfo]:
        return [
            GroupInfo(topic, group, lag, leased, active_at)
            for topic, group, active_at, lag, leased in await conn.fetch(sql, now)
        ]

    return await db.run(fetch, doing="listing the groups")


async def drop_group(db: Postgres, schema: Schema, topic: str, group: str) -> None:
    """Delete ``group``'s cursor on ``topic``, its pending rows and members; raises NotFound."""
    lock = schema.sql("SELECT pg_advisory_xact_lock({lock})")
    delete_cursor = schema.sql("DELETE FROM {s}.cursors WHERE grp = $1 AND topic = $2 RETURNING id")
    delete_pending = schema.sql("DELETE FROM {s}.pending WHERE cursor = $1")
    delete_members = schema.sql("DELETE FROM {s}.members WHERE cursor = $1")

    async def drop(conn: Any) -> None:
        async with conn.transaction():
            await conn.execute(lock)
            cursor = await conn.fetchval(delete_cursor, group, topic)
            if cursor is None:
                raise NotFound(f"no group {group!r} on {topic!r}")
            await conn.execute(delete_pending, cursor)
            await conn.execute(delete_members, cursor)

    await db.run(drop, doing=f"dropping group {group!r} on {topic!r}")
