"""The SQLite transport (lifecycle and wiring): the embedded durable queue, ``sqlite:///events.db``.

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

import time
from collections.abc import Sequence
from functools import partial

from tidings.errors import ServiceUnavailable, TransportError
from tidings.message import Message
from tidings.topics import validate_topic
from tidings.transports.base import GroupInfo
from tidings.transports.kit.leased import LeasedSubscriptions
from tidings.transports.kit.leased_transport import FEATURES, LeasedTransport
from tidings.transports.sqlite.dead_letters import SqliteDeadLetterStore
from tidings.transports.sqlite.groups import drop_group, list_groups
from tidings.transports.sqlite.options import SqliteOptions
from tidings.transports.sqlite.publish import append
from tidings.transports.sqlite.subscription import SqliteQueue
from tidings.transports.sqlite.wire import open_file

__all__ = ["FEATURES", "SqliteTransport", "from_url"]


def from_url(url: str) -> SqliteTransport:
    return SqliteTransport(SqliteOptions.from_url(url))


class SqliteTransport(LeasedTransport):
    """The SQLite transport. Constructing it does no I/O; the file is opened by :meth:`start`
    (or the first call that needs it) and created with its tables if missing.

    Safe for concurrent use by tasks of one event loop; other processes may share the file.
    """

    def __init__(self, options: SqliteOptions | str) -> None:
        if isinstance(options, str):
            options = SqliteOptions.from_url(options)
        self.options = options
        self._db = open_file(
            options.path,
            busy_timeout=options.busy_timeout,
            synchronous="FULL" if options.synchronous == "full" else "NORMAL",
        )
        spare = int(options.spare_mb * (1 << 20))
        super().__init__(
            LeasedSubscriptions(
                partial(SqliteQueue, self._db, spare), lease=options.lease, poll=options.poll
            )
        )

    def __repr__(self) -> str:
        return f"SqliteTransport({self.options.path!r})"

    async def start(self) -> None:
        self._check_open()
        await self._db.open()

    async def ping(self) -> None:
        """``SELECT 1`` on the reading connection (opening the file first if needed); raises
        ServiceUnavailable when the file cannot be opened or read."""
        self._check_open()
        await self._db.open()
        try:
            self._db.query("SELECT 1")
        except TransportError as exc:
            raise ServiceUnavailable(str(exc)) from exc

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Append ``messages`` to the log in one transaction, in order.

        Raises ValueError for a wildcard topic, ClosedError after :meth:`aclose`,
        ServiceUnavailable when another connection held the write lock for ``busy_timeout``
        seconds, TransportError when the database fails (nothing of the call is stored then). A
        call cancelled while it waits for the lock returns at once; its messages are not
        stored unless the lock came free first.
        """
        self._check_open()
        validate_topic(topic)
        if messages:
            await append(self._db, topic, messages)

    async def groups(self) -> list[GroupInfo]:
        """Every group's subscription to a topic or pattern, with its lag: see
        :class:`~tidings.transports.base.Groups`."""
        self._check_open()
        await self._db.open()
        return self._db.read(partial(list_groups, time.time()))

    async def drop_group(self, topic: str, group: str) -> None:
        """Forget ``group`` on ``topic`` (as subscribed: a pattern stays a pattern) and what it
        has pending; the log rows only it held are deleted by the next prune. Raises NotFound."""
        self._check_open()
        await self._db.write(partial(drop_group, topic, group))

    def dead_letters(self) -> SqliteDeadLetterStore:
        """Dead letters in a table of the same file."""
        return SqliteDeadLetterStore(self._db)

    async def _disconnect(self) -> None:
        await self._db.aclose()
