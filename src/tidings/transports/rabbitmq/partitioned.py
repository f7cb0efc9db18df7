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

from tidings.transports.kit.fan_in import FanIn
from tidings.transports.kit.ownership import Ownership
from tidings.transports.rabbitmq.leases import RabbitMQLeases
from tidings.transports.rabbitmq.subscription import RabbitMQDelivery, RabbitMQSubscription

__all__ = ["PartitionedSubscription"]


class PartitionedSubscription:
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
        self.topic, self.group, self.queue = shared.topic, shared.group, shared.queue
        self._shared = shared
        self._partition = partition
        self._forget = forget
        self._parts: dict[int, RabbitMQSubscription] = {}
        self._batches: FanIn[RabbitMQDelivery] = FanIn()
        self._ownership = Ownership(
            leases, count=count, lease=leases.lease, name=leases.name,
            start=self.start, stop=self.stop_reading, drained=self.drained,
        )  # fmt: skip
        self._closed = False
        self._finishing: asyncio.Future[None] | None = None

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

    def __aiter__(self) -> PartitionedSubscription:
        return self

    async def __anext__(self) -> list[RabbitMQDelivery]:
        if self._closed:
            raise StopAsyncIteration
        self._ownership.run()
        for subscription in (self._shared, *self._parts.values()):
            self._batches.follow(subscription)  # again, if it ended on an error
        return await self._batches.next()  # StopAsyncIteration once closed

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

    async def stop_reading(self, partitions: set[int]) -> None:
        """Hand out nothing more of these partitions; what was prefetched goes back once what
        was handed out is settled."""
        for n in partitions:
            if (part := self._parts.get(n)) is not None:
                await part.aclose()

    async def drained(self, partitions: set[int]) -> None:
        """Return once the channels of these partitions closed (everything settled)."""
        for n in partitions:
            if (part := self._parts.pop(n, None)) is not None:
                await part.finished()
                self._batches.forget(part)

    # -- closing ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Hand out nothing more, from now on (for the transport's close)."""
        for subscription in (self._shared, *self._parts.values()):
            subscription.stop()

    async def aclose(self) -> None:
        """Stop handing out deliveries (see :meth:`RabbitMQSubscription.aclose`: those received
        and not handed out go back to their queues); once every channel closed, the leases are
        released and this member leaves its group."""
        if self._closed:
            return
        self._closed = True
        for subscription in (self._shared, *self._parts.values()):
            await subscription.aclose()
        for delivery in self._batches.queued():  # received, never handed out: back to their queues
            await delivery.nack()
        self._batches.end()
        self._finishing = asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        try:
            for subscription in [self._shared, *self._parts.values()]:
                await subscription.finished()
            self._batches.cancel()
            await self._ownership.aclose()
        finally:
            self._forget(self)

    async def shutdown(self) -> None:
        """For the transport's close: every channel's shutdown, then the leases released."""
        await self.aclose()
        for subscription in (self._shared, *self._parts.values()):
            await subscription.shutdown()
        assert self._finishing is not None
        await self._finishing
