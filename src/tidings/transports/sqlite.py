"""SQLite transport: the embedded durable queue, ``sqlite:///events.db``.

Every published message is a row of one log table. A group's subscription to a topic (or pattern)
is a *cursor*: a position in the log plus a pending table of the messages it was handed and has not
acknowledged yet. Fetching copies the next log rows into the pending table, advances the position
and leases a batch of pending rows to the fetching subscription, all in one transaction:

* competing subscriptions of a group (in this process or others sharing the file) never lease the
  same row at once; every group has its own cursor and sees every message;
* a lease lasts ``lease`` seconds and is renewed while its subscription lives, so the messages of a
  crashed worker are delivered again once their leases expire; ``attempt`` counts deliveries;
* ``nack(delay)`` makes the row available again ``delay`` seconds later (stored, so it survives a
  restart); ``ack`` deletes it. Both are recorded and written in bulk with the next fetch or by a
  flush on the next loop turn, and at the latest by ``Subscription.aclose()``;
* per key, a group is handed messages in log order: a row is held back while an earlier row with the
  same key is leased to another subscription or waits for its nack delay;
* a new group starts at the oldest message still in the log (``features.replays_history``). Log rows
  that every cursor has passed and nobody has pending are deleted about every second by a fetching
  subscription (in batches of 100,000, again at once while a batch is full); with no cursor at
  all, nothing is deleted. A file this transport created gives the free space beyond
  ``spare_mb`` back to the file system (incremental auto_vacuum).

A commit wakes this process's waiting subscriptions at once; other processes writing the same file
are noticed within ``poll`` seconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from tidings.errors import ClosedError
from tidings.message import Message
from tidings.topics import validate_topic
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kit.leased import LeasedSubscription, LeasedSubscriptions
from tidings.transports.kit.options import query_options
from tidings.transports.sqlite_db import Database, Doorbell, transaction
from tidings.transports.sqlite_deadletters import SqliteDeadLetterStore
from tidings.transports.sqlite_groups import drop_group, list_groups
from tidings.transports.sqlite_queue import SqliteQueue
from tidings.urls import redact

__all__ = ["FEATURES", "SqliteOptions", "SqliteTransport", "from_url"]

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    native_delay=True,
    replays_history=True,
    wildcards=True,
)

_encode_headers = msgspec.json.Encoder().encode

_INSERT = (
    "INSERT INTO tidings_log (topic, id, type, key, headers, data, time) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class SqliteOptions:
    """Settings of the SQLite transport; every field can be given as a URL query parameter:
    ``sqlite:///events.db?lease=10&poll=0.5``."""

    path: str
    """The database file: ``sqlite:///events.db`` is relative, ``sqlite:////srv/a.db`` absolute."""
    lease: float = 30.0
    """Seconds a delivery stays leased to a subscription that stopped renewing it (crashed)."""
    poll: float = 0.2
    """Seconds between looks for messages that other processes wrote to the file."""
    busy_timeout: float = 5.0
    """Seconds a publish waits for another connection's write lock (a backup, a VACUUM) before
    raising ServiceUnavailable, with nothing stored; subscriptions wait as long as it takes."""
    synchronous: Literal["normal", "full"] = "normal"
    """``normal`` survives process crashes; ``full`` also survives power loss, at a cost."""
    spare_mb: float = 32.0
    """Megabytes of free space the file keeps for new messages once they were deleted; the
    rest is given back to the file system (in files this version created; see the docs)."""

    @classmethod
    def from_url(cls, url: str) -> SqliteOptions:
        """Parse ``sqlite:///path?option=value``; raises ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"expected sqlite:///path/to/file.db, got {redact(url)!r}")
        path = parts.path[1:]
        if not path:
            raise ValueError(f"no database file in {redact(url)!r}")
        values = query_options(cls, parts.query, scheme="sqlite", exclude=("path",))
        options = cls(path, **values)  # type: ignore[arg-type]  # each value parsed by its type
        if min(options.lease, options.poll, options.busy_timeout) <= 0:
            raise ValueError("lease, poll and busy_timeout must be positive")
        if options.spare_mb < 0:
            raise ValueError("spare_mb cannot be negative")
        return options


def from_url(url: str) -> SqliteTransport:
    return SqliteTransport(SqliteOptions.from_url(url))


class SqliteTransport:
    """The SQLite transport. Constructing it does no I/O; the file is opened by :meth:`start`
    (or the first call that needs it) and created with its tables if missing.

    Safe for concurrent use by tasks of one event loop; other processes may share the file.
    """

    features = FEATURES

    def __init__(self, options: SqliteOptions | str) -> None:
        if isinstance(options, str):
            options = SqliteOptions.from_url(options)
        self.options = options
        self._db = Database(
            options.path,
            busy_timeout=options.busy_timeout,
            synchronous=options.synchronous.upper(),
            spare=int(options.spare_mb * (1 << 20)),
        )
        self._subscriptions = LeasedSubscriptions(
            partial(SqliteQueue, self._db), lease=options.lease, poll=options.poll
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteTransport({self.options.path!r})"

    async def start(self) -> None:
        self._check_open()
        await self._db.open()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Append ``messages`` to the log in one transaction, in order.

        Raises ValueError for a wildcard topic, ClosedError after :meth:`aclose`,
        ServiceUnavailable when another connection held the write lock for ``busy_timeout``
        seconds, TransportError when the database fails (nothing of the call is stored then). A
        call cancelled while it waits for the lock ends within half a second; if the lock came
        free meanwhile, its messages may have been stored.
        """
        self._check_open()
        validate_topic(topic)
        if not messages:
            return
        rows = [
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
        await self._db.run(partial(_append, rows))
        Doorbell.ring(self._db.key)

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> LeasedSubscription:
        """A subscription of ``group`` to ``topic`` (or a wildcard pattern); at most ``prefetch``
        deliveries are handed out and not yet acked or nacked at any time."""
        self._check_open()
        return self._subscriptions.open(topic, group, prefetch)

    async def groups(self) -> list[GroupInfo]:
        """Every group's subscription to a topic or pattern, with its lag: see
        :class:`~tidings.transports.base.Groups`."""
        self._check_open()
        return await self._db.run(partial(list_groups, time.time()))

    async def drop_group(self, topic: str, group: str) -> None:
        """Forget ``group`` on ``topic`` (as subscribed: a pattern stays a pattern) and what it
        has pending; the log rows only it held are deleted by the next prune. Raises NotFound."""
        self._check_open()
        await self._db.run(partial(drop_group, topic, group))

    def dead_letters(self) -> SqliteDeadLetterStore:
        """Dead letters in a table of the same file."""
        return SqliteDeadLetterStore(self._db)

    async def aclose(self) -> None:
        """End every subscription, write their acks and nacks, give back the leases of deliveries
        never settled (they come again), then close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._subscriptions.shutdown()
        await self._db.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")


def _append(rows: Sequence[tuple[object, ...]], conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.executemany(_INSERT, rows)
