"""PostgreSQL transport: ``postgresql://user@host:5432/db?schema=tidings``.

The same model as the SQLite transport, in one schema of a database (``schema`` isolates
applications or tests sharing a database; its layout is in ``wire.py``):

* ``publish`` appends the messages to a log table and, in the same transaction, adds a pending row
  for every group subscribed to a matching topic, then NOTIFYs once per call (payload: the topic);
* a subscription leases batches of its group's pending rows, claimed with ``FOR UPDATE SKIP LOCKED``
  so that competing consumers (in any number of processes) never wait for each other; leases are
  renewed while the subscription lives, so a crashed worker's messages come again when they run
  out; ``nack(delay)`` stores when the row is available again; acks delete rows, in bulk;
* per key, a group is handed messages in publish order (see ``subscription.py``);
* a new group starts with the messages still kept (``features.replays_history``): log rows are
  deleted once no group has them pending, as soon as any group exists;
* LISTEN wakes waiting subscriptions at once; they also look every ``poll`` seconds and when a
  nack delay or a lease runs out. After a server restart the pool and the LISTEN connection
  reconnect; publishes wait up to ``reconnect_timeout`` for the server to come back.

Connections, the LISTEN connection and the mapping of asyncpg's errors are
:mod:`tidings.sql.postgres`'s and :mod:`tidings.sql.listen`'s, shared with the event store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from tidings.message import Message
from tidings.sql.listen import Listener
from tidings.sql.postgres import Postgres, where
from tidings.transports.base import GroupInfo
from tidings.transports.kit.leased import LeasedSubscriptions
from tidings.transports.kit.leased_transport import FEATURES, LeasedTransport
from tidings.transports.postgres.dead_letters import PostgresDeadLetterStore
from tidings.transports.postgres.groups import drop_group, list_groups
from tidings.transports.postgres.options import PostgresOptions
from tidings.transports.postgres.publish import Publisher
from tidings.transports.postgres.subscription import PostgresQueue, Watchers
from tidings.transports.postgres.wire import SETTINGS, Schema

__all__ = ["FEATURES", "PostgresTransport", "from_url"]


def from_url(url: str) -> PostgresTransport:
    return PostgresTransport(PostgresOptions.from_url(url))


class PostgresTransport(LeasedTransport):
    """The PostgreSQL transport. Constructing it does no I/O; :meth:`start` connects and creates
    the schema's tables if missing. Safe for concurrent use by tasks of one event loop."""

    def __init__(self, options: PostgresOptions | str) -> None:
        if isinstance(options, str):
            options = PostgresOptions.from_url(options)
        self.options = options
        self._schema = Schema(options.schema)
        self._db = Postgres(
            options.dsn,
            name=f"the PostgreSQL transport at {where(options.dsn)}",
            pool_size=options.pool_size,
            settings=SETTINGS,
            prepare=self._prepare,
            retry_for=options.reconnect_timeout,
        )
        self._watchers = Watchers()
        self._listener = Listener(
            self._db, self._schema.channel, notified=self._notified, connected=self._connected
        )
        self._publisher = Publisher(self._db, self._schema)
        super().__init__(
            LeasedSubscriptions(
                partial(PostgresQueue, self._db, self._schema, self._watchers),
                lease=options.lease,
                poll=options.poll,
            )
        )

    def __repr__(self) -> str:
        return f"PostgresTransport({self._db.where!r}, schema={self.options.schema!r})"

    async def start(self) -> None:
        """Connect; raises ServiceUnavailable (naming host, port and database, never the
        password) when the server cannot be reached."""
        self._check_open()
        await self._db.open()

    async def ping(self) -> None:
        """``SELECT 1`` on a pooled connection (connecting first if needed); raises
        ServiceUnavailable when the server does not answer. Never retried: a readiness probe
        wants the answer now."""
        self._check_open()
        await self._db.run(_select_one, doing="pinging", retry=False)

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` in one transaction, in order, and notify subscribers.

        Raises ValueError for a wildcard topic, ClosedError after :meth:`aclose`,
        ServiceUnavailable when the server stayed unreachable for ``reconnect_timeout``, and
        TransportError for other failures (nothing of the call is stored then). A publish retried
        after a lost connection may store the messages twice (same ids).
        """
        self._check_open()
        await self._publisher.publish(topic, messages)

    async def groups(self) -> list[GroupInfo]:
        """Every group's subscription to a topic or pattern, with its lag: see
        :class:`~tidings.transports.base.Groups`."""
        self._check_open()
        return await list_groups(self._db, self._schema, time.time())

    async def drop_group(self, topic: str, group: str) -> None:
        """Forget ``group`` on ``topic`` (as subscribed: a pattern stays a pattern) and what it
        has pending; the log rows only it held are deleted by the next prune. Raises NotFound."""
        self._check_open()
        await drop_group(self._db, self._schema, topic, group)

    def dead_letters(self) -> PostgresDeadLetterStore:
        """Dead letters in a table of the same schema."""
        return PostgresDeadLetterStore(self._db, self._schema)

    async def _disconnect(self) -> None:
        await self._listener.aclose()
        await self._db.aclose()

    async def _prepare(self, connection: Any) -> None:
        """Create the schema's tables and functions if missing, then LISTEN."""
        async with connection.transaction():
            await connection.execute(self._schema.create())
        await self._listener.start()

    def _notified(self, payload: str) -> None:
        self._watchers.ring()

    async def _connected(self) -> None:
        self._watchers.ring()  # notifications may have been missed while it was away


async def _select_one(connection: Any) -> None:
    await connection.execute("SELECT 1")
