"""A group's subscription on RabbitMQ: its shared queue and the partition queues it owns.

A message without a key is published to the topic exchange and reaches the group's queue of the
topic, which every subscription of the group consumes (competing consumers). A keyed message is
published to the exchange of keyed messages with its partition in the routing key (see
:mod:`.wire`), and reaches the group's queue of that partition. Each subscription declares all
of them (so a publish after ``subscribe()`` reaches the group), and consumes a partition's queue
only while it holds that partition's lease (:mod:`.leases`), which the kit's
:class:`~tidings.transports.kit.ownership.Ownership` takes, spreads and hands over.

A partition's queue is consumed on a channel of its own, so that giving it up is closing that
channel once what it handed out is settled: the acks go first, and what was prefetched goes back
to the head of the queue, before the lease is released. After a reconnect a partition's consumer
does not resume: its lease died with the old connection, and the next ownership round starts
the partitions this subscription holds again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tidings.transports.kit.partitioned import Partitioned
from tidings.transports.rabbitmq.leases import RabbitMQLeases
from tidings.transports.rabbitmq.subscription import RabbitMQDelivery, RabbitMQSubscription

__all__ = ["PartitionedSubscription"]


class PartitionedSubscription(Partitioned[RabbitMQSubscription, RabbitMQDelivery]):
    """A group's subscription to a topic: the deliveries of its ``shared`` queue and of the
    queue of each of ``count`` partitions it owns by ``leases`` (``partition(n)`` makes that
    one's subscription); ``forget(self)`` is called once every channel of it closed. Iterate
    it from one task."""

    def __init__(
        self,
        shared: RabbitMQSubscription,
        partition: Callable[[int], RabbitMQSubscription],
        leases: RabbitMQLeases,
        *,
        count: int,
        forget: Callable[[PartitionedSubscription], None],
    ) -> None:
        super().__init__(shared, partition, leases, count=count)
        self.queue = shared.queue
        self._forget = forget

    def __repr__(self) -> str:
        return f"PartitionedSubscription({self.queue!r})"

    @property
    def opening(self) -> asyncio.Future[None] | None:
        """The declaration of the group's queues (set by the transport)."""
        return self._shared.opening

    @opening.setter
    def opening(self, task: asyncio.Future[None] | None) -> None:
        self._shared.opening = task

    async def open(self) -> None:
        """Declare the group's queues and bindings: the topic's and every partition's."""
        await self._shared.open()

    # -- ownership ----------------------------------------------------------------------------

    async def start(self, partitions: set[int]) -> None:
        """Consume the queues of these partitions (their leases were just taken)."""
        if self._closed:
            return  # released when the ownership closes
        for n in partitions:
            if (lost := self._parts.get(n)) is not None:
                self._batches.forget(lost)
            part = self._parts[n] = self._partition(n)
            part.opening = asyncio.ensure_future(self._open(part))
            self._batches.follow(part)

    async def _open(self, part: RabbitMQSubscription) -> None:
        """Open ``part`` once the group's queues are declared (again, after a reconnect): the
        same binding declared on two channels at once can make RabbitMQ close the connection
        (``INTERNAL_ERROR``)."""
        if (declaring := self._shared.opening) is not None:
            await asyncio.wait([declaring])
        await part.open()

    async def _settled(self, part: RabbitMQSubscription) -> None:
        await part.finished()  # its channel closed: everything settled

    # -- closing ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Hand out nothing more, from now on (for the transport's close)."""
        for subscription in self._every():
            subscription.stop()

    async def _finish(self) -> None:
        """Once every channel closed (everything settled), release the leases and leave."""
        try:
            for subscription in self._every():
                await subscription.finished()
            self._batches.cancel()
            await self._ownership.aclose()
        finally:
            self._forget(self)

    async def shutdown(self) -> None:
        """For the transport's close: every channel's shutdown, then the leases released."""
        await self.aclose()
        for subscription in self._every():
            await subscription.shutdown()
        assert self._finishing is not None
        await self._finishing
