"""Partition leases and group members on RabbitMQ, for the kit's ownership rounds.

:class:`RabbitMQLeases` is the :class:`~tidings.transports.kit.ownership.Leases` of one
subscription, kept with AMQP 0-9-1 alone (no plugin):

* A partition's **lease** is an *exclusive* queue named after it (``…#<n>.lease``), declared
  on the transport's connection. RabbitMQ refuses a second declarer (``RESOURCE_LOCKED``) and
  deletes the queue when its connection closes, so a lease needs no renewal and no clock: it
  is held exactly as long as the connection that consumes the partition lives. A worker that
  dies (or loses its connection) frees its partitions at once; its unacknowledged messages go
  back to their queues at the same moment. A lease is released by deleting its queue.
* **Presence**: every member binds its own exclusive, auto-deleted, server-named queue to the
  group's durable fanout exchange (``…#members``, kept after use) and announces its name there
  every round; a member counts as live for ``lease`` seconds after its last announcement. A
  member hearing a name for the first time announces itself at once, so a newcomer knows the
  others within a round trip. One leaving says so; one that died is forgotten ``lease`` seconds
  later.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING

from aiormq.exceptions import ChannelLockedResource
from pamqp.commands import Basic

from tidings.transports.kit.errors import ErrorMap

if TYPE_CHECKING:
    from aiormq import Channel
    from aiormq.abc import DeliveredMessage

__all__ = ["RabbitMQLeases"]

_HERE, _GONE = "here", "gone"
"""The two announcements on the members' exchange (as the message type)."""


class RabbitMQLeases:
    """The leases on ``count`` partitions, named by ``lease_queue(n)``, and the presence on
    the fanout exchange ``members`` of one subscription (:attr:`name`, made up here), through
    channels that ``open_channel()`` opens on the transport's connection; a member lasts
    ``lease`` seconds. See the module docstring. Use from one event loop."""

    def __init__(
        self,
        open_channel: Callable[[], Awaitable[Channel]],
        errors: ErrorMap,
        *,
        lease_queue: Callable[[int], str],
        members: str,
        lease: float,
    ) -> None:
        self._open_channel = open_channel
        self._errors = errors
        self._lease_queue = lease_queue
        self._members = members
        self.lease = lease
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._leases: Channel | None = None  # declares and deletes lease queues
        self._taken: set[int] = set()  # lease queues declared on the connection below
        self._owner: object = None  # the connection the leases live on (and die with)
        self._presence: Channel | None = None  # announces, and hears the others
        self._seen: dict[str, float] = {}  # member -> when it stops counting (monotonic)
        self._replies: set[asyncio.Task[None]] = set()

    # -- presence -----------------------------------------------------------------------------

    async def announce(self) -> list[str]:
        with self._errors.mapping("announcing the group's member"):
            await self._say(_HERE)
        now = time.monotonic()
        self._seen = {name: until for name, until in self._seen.items() if until > now}
        return sorted({*self._seen, self.name})

    async def leave(self) -> None:
        """Say so, and close both channels (release the leases first: they are the
        connection's, not the channel's)."""
        for reply in list(self._replies):
            reply.cancel()
        presence, self._presence = self._presence, None
        leases, self._leases = self._leases, None
        with self._errors.mapping("leaving the group's members"):
            try:
                if presence is not None and not presence.is_closed:
                    await presence.basic_publish(
                        self.name.encode(), exchange=self._members, properties=_said(_GONE)
                    )
            finally:
                for channel in (presence, leases):
                    if channel is not None and not channel.is_closed:
                        await channel.close()  # the member's queue goes with its consumer

    async def _say(self, kind: str) -> None:
        channel = self._presence
        if channel is None or channel.is_closed:
            channel = self._presence = await self._join()
        await channel.basic_publish(
            self.name.encode(), exchange=self._members, properties=_said(kind)
        )

    async def _join(self) -> Channel:
        """A channel consuming this member's queue, bound to the members' exchange."""
        channel = await self._open_channel()
        # Kept after use, never auto-deleted: deleting it as the last member's queue goes
        # would race with a newcomer binding to it.
        await channel.exchange_declare(self._members, exchange_type="fanout", durable=True)
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        assert declared.queue is not None
        await channel.queue_bind(declared.queue, self._members)
        await channel.basic_consume(declared.queue, self._heard, no_ack=True)
        return channel

    async def _heard(self, delivered: DeliveredMessage) -> None:
        name = delivered.body.decode(errors="replace")
        if delivered.header.properties.message_type == _GONE:
            self._seen.pop(name, None)
            return
        new = name not in self._seen
        self._seen[name] = time.monotonic() + self.lease
        if new and name != self.name and not self._replies:  # a newcomer: count me at once
            reply = asyncio.ensure_future(self._say(_HERE))
            self._replies.add(reply)
            reply.add_done_callback(_quietly(self._replies))

    # -- leases -------------------------------------------------------------------------------

    async def hold(self, held: Sequence[int], wanted: Sequence[int], limit: int) -> set[int]:
        with self._errors.mapping("keeping partition leases"):
            await self._lease_channel()
            mine = set(held) & self._taken
            for partition in wanted:
                if len(mine) >= limit:
                    break
                if await self._take(partition):
                    mine.add(partition)
            return mine & self._taken  # the connection may have changed meanwhile

    async def _take(self, partition: int) -> bool:
        channel = await self._lease_channel()
        try:
            await channel.queue_declare(self._lease_queue(partition), exclusive=True)
        except ChannelLockedResource:
            return False  # another connection holds it (the refusal closed the channel)
        self._taken.add(partition)
        return True

    async def release(self, partitions: Collection[int]) -> None:
        mine = self._taken & set(partitions)
        if not mine:
            return
        with self._errors.mapping("releasing partition leases"):
            channel = await self._lease_channel()
            for partition in mine:
                await channel.queue_delete(self._lease_queue(partition))
                self._taken.discard(partition)

    async def _lease_channel(self) -> Channel:
        """The open channel for leases; on a new connection, the old one's leases are gone."""
        channel = self._leases
        if channel is None or channel.is_closed:
            channel = self._leases = await self._open_channel()
        if channel.connection is not self._owner:
            self._owner, self._taken = channel.connection, set()
        return channel


def _said(kind: str) -> Basic.Properties:
    return Basic.Properties(message_type=kind)


def _quietly(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """A done callback: forget the task, and its error (a reply is tried again next round)."""

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done
