"""PostgreSQL transport: ``postgresql://user@host:5432/db?schema=tidings``.

The same model as the SQLite transport, in one schema of a database (``schema`` isolates
applications or tests sharing a database):

* ``publish`` appends the messages to a log table and, in the same transaction, adds a pending row
  for every group subscribed to a matching topic, then NOTIFYs once per call (payload: the topic);
* a subscription leases batches of its group's pending rows, claimed with ``FOR UPDATE SKIP LOCKED``
  so that competing consumers (in any number of processes) never wait for each other; leases are
  renewed while the subscription lives, so a crashed worker's messages come again when they run
  out; ``nack(delay)`` stores when the row is available again; acks delete rows, in bulk;
* per key, a group is handed messages in publish order (see ``postgres_queue.py``);
* a new group starts with the messages still kept (``features.replays_history``): log rows are
  deleted once no group has them pending, as soon as any group exists;
* LISTEN wakes waiting subscriptions at once; they also look every ``poll`` seconds and when a
  nack delay or a lease runs out. After a server restart the pool and the LISTEN connection
  reconnect; publishes wait up to ``reconnect_timeout`` for the server to come back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec

from tidings.errors import ClosedError
from tidings.message import Message
from tidings.topics import validate_topic
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kit.leased import LeasedSubscription, LeasedSubscriptions
from tidings.transports.kit.options import redacted_repr
from tidings.transports.postgres_db import Database
from tidings.transports.postgres_deadletters import PostgresDeadLetterStore
from tidings.transports.postgres_groups import drop_group, list_groups
from tidings.transports.postgres_queue import PostgresQueue
from tidings.urls import redact

__all__ = ["FEATURES", "PostgresOptions", "PostgresTransport", "from_url"]

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    native_delay=True,
    replays_history=True,
    wildcards=True,
)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_encode_headers = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """Settings of the PostgreSQL transport. Every field but ``dsn`` can be given as a URL
    query parameter (``?schema=app&lease=10``); other parameters (``sslmode``…) go to asyncpg."""

    dsn: str
    """The connection URL, without the parameters below."""
    schema: str = "tidings"
    """Schema holding the tables (created if missing): lower-case letters, digits, ``_``."""
    lease: float = 30.0
    """Seconds a delivery stays leased to a subscription that stopped renewing it (crashed)."""
    poll: float = 1.0
    """Seconds between looks when no notification came (a safety net for missed ones)."""
    pool_size: int = 10
    """Most connections in the pool (plus one for LISTEN)."""
    reconnect_timeout: float = 30.0
    """Seconds a publish keeps trying while the server is unreachable."""

    def __repr__(self) -> str:
        return redacted_repr(self)

    @classmethod
    def from_url(cls, url: str) -> PostgresOptions:
        """Parse a ``postgresql://`` (or ``postgres://``) URL; raises ValueError."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"expected a postgresql:// URL, got {redact(url)!r}")
        ours = {f.name for f in fields(cls)} - {"dsn"}
        values: dict[str, Any] = {}
        rest = []
        for name, value in parse_qsl(parts.query):
            if name in ours:
                values[name] = value if name == "schema" else float(value)
            else:
                rest.append((name, value))
        if "pool_size" in values:
            values["pool_size"] = int(values["pool_size"])
        dsn = parts._replace(scheme="postgresql", query=urlencode(rest)).geturl()
        options = cls(dsn, **values)
        if not _SCHEMA_NAME.fullmatch(options.schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, not {options.schema!r}")
        if min(options.lease, options.poll, options.reconnect_timeout, options.pool_size) <= 0:
            raise ValueError("lease, poll, pool_size and reconnect_timeout must be positive")
        return options


def from_url(url: str) -> PostgresTransport:
    return PostgresTransport(PostgresOptions.from_url(url))


class PostgresTransport:
    """The PostgreSQL transport. Constructing it does no I/O; :meth:`start` connects and creates
    the schema's tables if missing. Safe for concurrent use by tasks of one event loop."""

    features = FEATURES

    def __init__(self, options: PostgresOptions | str) -> None:
        if isinstance(options, str):
            options = PostgresOptions.from_url(options)
        self.options = options
        self._db = Database(options)
        self._publish_sql = self._db.sql("SELECT {s}.publish($1, $2, $3, $4, $5, $6, $7, $8)")
        self._subscriptions = LeasedSubscriptions(
            partial(PostgresQueue, self._db), lease=options.lease, poll=options.poll
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresTransport({self._db.where!r}, schema={self.options.schema!r})"

    async def start(self) -> None:
        """Connect; raises ServiceUnavailable (naming host, port and database, never the
        password) when the server cannot be reached."""
        self._check_open()
        await self._db.open()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` in one transaction, in order, and notify subscribers.

        Raises ValueError for a wildcard topic, ClosedError after :meth:`aclose`,
        ServiceUnavailable when the server stayed unreachable for ``reconnect_timeout``, and
        TransportError for other failures (nothing of the call is stored then). A publish retried
        after a lost connection may store the messages twice (same ids).
        """
        self._check_open()
        validate_topic(topic)
        if not messages:
            return
        args = (
            topic,
            [m.id for m in messages],
            [m.type for m in messages],
            [m.key for m in messages],
            [_encode_headers(m.headers) if m.headers else None for m in messages],
            [m.data for m in messages],
            [m.timestamp for m in messages],
            self._db.channel,
        )
        await self._db.run(lambda conn: conn.execute(self._publish_sql, *args))

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> LeasedSubscription:
        """A subscription of ``group`` to ``topic`` (or a wildcard pattern); at most ``prefetch``
        deliveries are handed out and not yet acked or nacked at any time."""
        self._check_open()
        return self._subscriptions.open(topic, group, prefetch)

    async def groups(self) -> list[GroupInfo]:
        """Every group's subscription to a topic or pattern, with its lag: see
        :class:`~tidings.transports.base.Groups`."""
        self._check_open()
        return await list_groups(self._db, time.time())

    async def drop_group(self, topic: str, group: str) -> None:
        """Forget ``group`` on ``topic`` (as subscribed: a pattern stays a pattern) and what it
        has pending; the log rows only it held are deleted by the next prune. Raises NotFound."""
        self._check_open()
        await drop_group(self._db, topic, group)

    def dead_letters(self) -> PostgresDeadLetterStore:
        """Dead letters in a table of the same schema."""
        return PostgresDeadLetterStore(self._db)

    async def aclose(self) -> None:
        """End every subscription, write their acks and nacks, give back the leases of deliveries
        never settled (they come again), then disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._subscriptions.shutdown()
        await self._db.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
