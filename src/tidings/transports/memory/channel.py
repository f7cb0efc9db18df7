"""A channel of the in-process transport: a bounded FIFO of one group's messages, and the
deliveries it lends to that group's subscribers (see :mod:`tidings.transports.memory`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import msgspec

from tidings._waiters import wake_one
from tidings.clock import Clock
from tidings.errors import ClosedError
from tidings.message import Message

__all__ = ["Channel", "MemoryDelivery"]


class MemoryDelivery(msgspec.Struct, eq=False, gc=False):
    """One message taken from a channel, at one of its attempts.

    Made per message, so a Struct (built in C) that the cyclic garbage collector does not
    track: with a thousand in flight, tracking them doubled the collector's passes. A channel
    never refers to a delivery it lent (redeliveries wait as :class:`_Redelivery`), so a cycle
    through one runs only through Tasks still waiting on the channel, which end when the bus
    closes (as ``asyncio.run`` cancels those left).
    """

    _channel: Channel
    message: Message
    attempt: int
    lent: bool = True
    """Taken by a subscriber that has neither started on it nor settled it yet."""

    def start(self) -> None:
        """Work on it began: it no longer waits, so it leaves the channel's capacity."""
        if self.lent:
            self.lent = False
            channel = self._channel
            channel.lent -= 1
            if channel._putters:
                wake_one(channel._putters)

    async def ack(self) -> None:
        self.ack_now()

    def ack_now(self) -> None:
        """``ack`` as a plain call: the consume loop spares itself a coroutine per message."""
        if self.lent:
            self.start()
        self._channel.finished()

    async def nack(self, delay: float = 0.0) -> None:
        if self.lent:
            self.start()
        self._channel.redeliver(self.message, self.attempt + 1, delay)


class _Redelivery(msgspec.Struct, frozen=True, gc=False):
    """A message waiting in its channel for another attempt."""

    message: Message
    attempt: int


class Channel:
    """A bounded FIFO of deliveries for one group, counting messages not yet acknowledged."""

    def __init__(self, topic: str, group: str, capacity: int, clock: Clock) -> None:
        self.topic = topic
        self.group = group
        self.capacity = capacity
        self._clock = clock
        # First deliveries wait as bare messages; redeliveries with their attempt.
        self._queue: deque[Message | _Redelivery] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._delayed: dict[asyncio.Task[None], Message] = {}
        self.lent = 0
        """Deliveries taken by consumers that have not started on them yet."""
        self.unfinished = 0
        self.closed = False
        self.retired = False
        """No longer routed to: takers end once what it holds is finished."""

    def full(self) -> bool:
        return len(self._queue) + self.lent >= self.capacity

    def offer(self, message: Message) -> bool:
        """Queue ``message`` if there is room; False when the channel is full."""
        if len(self._queue) + self.lent >= self.capacity:
            return False
        self._queue.append(message)
        self.unfinished += 1
        if self._getters:
            wake_one(self._getters)
        return True

    async def room(self) -> None:
        """Wait until the channel may have room (check again: another publisher may take it)."""
        waiter = asyncio.get_running_loop().create_future()
        self._putters.append(waiter)
        try:
            await waiter
        except BaseException:
            waiter.cancel()
            if not waiter.cancelled():
                self.pass_room()  # a wake-up this cancelled publisher received
            raise
        if self.closed:
            raise ClosedError("the memory transport was closed")

    def pass_room(self) -> None:
        """Hand a wake-up on to the next waiting publisher if there is still room."""
        if self._putters and not self.full():
            wake_one(self._putters)

    async def take(self, limit: int, stopped: Callable[[], bool]) -> list[MemoryDelivery] | None:
        """Up to ``limit`` deliveries, waiting while the channel is empty; None once the channel
        is closed or ``stopped()`` says the taker has stopped."""
        queue = self._queue
        while not queue or stopped():
            if self.closed or stopped() or (self.retired and not self.unfinished):
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                raise
        count = min(limit, len(queue))
        self.lent += count
        popleft = queue.popleft
        batch: list[MemoryDelivery] = []
        append = batch.append
        for _ in range(count):
            item = popleft()
            if type(item) is _Redelivery:
                append(MemoryDelivery(self, item.message, item.attempt))
            else:
                append(MemoryDelivery(self, item, 1))  # type: ignore[arg-type]
        return batch

    def finished(self) -> None:
        self.unfinished -= 1
        if self.unfinished == 0:
            if self._idle:
                for waiter in self._idle:
                    if not waiter.done():
                        waiter.set_result(None)
                self._idle.clear()
            if self.retired:
                self.wake_takers()  # they end now

    def redeliver(self, message: Message, attempt: int, delay: float) -> None:
        if delay <= 0:
            self._requeue(message, attempt)
            return
        timer = asyncio.ensure_future(self._requeue_later(message, attempt, delay))
        self._delayed[timer] = message

    async def _requeue_later(self, message: Message, attempt: int, delay: float) -> None:
        try:
            await self._clock.sleep(delay)
        finally:
            self._delayed.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        self._requeue(message, attempt)

    def _requeue(self, message: Message, attempt: int) -> None:
        # Redeliveries may exceed the capacity: refusing them would lose an accepted message.
        self._queue.append(_Redelivery(message, attempt))
        if self._getters:
            wake_one(self._getters)

    async def join(self) -> None:
        """Return once every accepted message was acknowledged."""
        if self.unfinished:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter

    def pending(self) -> list[Message]:
        """Messages queued and not yet handed to a consumer, and those waiting to be redelivered."""
        queued = [item.message if isinstance(item, _Redelivery) else item for item in self._queue]
        return queued + list(self._delayed.values())

    def wake_takers(self) -> None:
        while self._getters:
            wake_one(self._getters)

    def close(self) -> None:
        self.closed = True
        for timer in list(self._delayed):
            timer.cancel()
        self.wake_takers()
        while self._putters:
            wake_one(self._putters)
