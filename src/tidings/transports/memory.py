"""The in-process transport: bounded channels, one per (pattern, group).

Messages carry event objects (``features.in_process``): nothing is encoded. A
:class:`MemoryBroker` holds a channel per (pattern, group), each with up to ``capacity`` queued
messages; a publisher waits while a channel is full (``publish_nowait`` raises QueueFull
instead). Subscriptions of one group take from the same channel (competing consumers).
``nack(delay)`` puts the message back after the delay with its attempt counted. Several
:class:`MemoryTransport` handles may share one broker, as clients share a server. Nothing
survives the process.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence

from tidings._waiters import wake_one
from tidings.clock import Clock, SystemClock
from tidings.deadletters import DeadLetterStore, MemoryDeadLetterStore
from tidings.errors import ClosedError, QueueFull
from tidings.message import Message
from tidings.topics import matches, validate_pattern, validate_topic
from tidings.transports.base import Features

__all__ = ["MemoryBroker", "MemoryTransport", "from_url"]

DEFAULT_CAPACITY = 1024


class MemoryDelivery:
    __slots__ = ("_channel", "attempt", "message")

    def __init__(self, channel: Channel, message: Message, attempt: int) -> None:
        self._channel = channel
        self.message = message
        self.attempt = attempt

    async def ack(self) -> None:
        self._channel.finished()

    async def nack(self, delay: float = 0.0) -> None:
        self._channel.redeliver(self.message, self.attempt + 1, delay)


class Channel:
    """A bounded FIFO of deliveries for one group, counting messages not yet acknowledged."""

    def __init__(self, capacity: int, clock: Clock) -> None:
        self.capacity = capacity
        self._clock = clock
        # First deliveries wait as bare messages (one object fewer for the garbage collector to
        # track while queued); redeliveries wait as deliveries, which carry their attempt.
        self._queue: deque[Message | MemoryDelivery] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._timers: set[asyncio.Task[None]] = set()
        self.unfinished = 0
        self.closed = False

    def full(self) -> bool:
        return len(self._queue) >= self.capacity

    def offer(self, message: Message) -> bool:
        """Queue ``message`` if there is room; False when the channel is full."""
        if len(self._queue) >= self.capacity:
            return False
        self._queue.append(message)
        self.unfinished += 1
        if self._getters:
            wake_one(self._getters)
        return True

    def put_nowait(self, message: Message) -> None:
        if not self.offer(message):
            raise QueueFull(f"channel is at its capacity of {self.capacity}")

    async def put(self, message: Message) -> None:
        while len(self._queue) >= self.capacity:
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if not waiter.cancelled() and self._queue:
                    wake_one(self._putters)  # pass on a wake-up this cancelled publisher received
                raise
            if self.closed:
                raise ClosedError("the memory transport was closed")
        self.put_nowait(message)

    async def take(self, limit: int, stopped: Callable[[], bool]) -> list[MemoryDelivery] | None:
        """Up to ``limit`` deliveries, waiting while the channel is empty; None once the channel
        is closed or ``stopped()`` says the taker has stopped."""
        queue = self._queue
        while not queue:
            if self.closed or stopped():
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                raise
        count = min(limit, len(queue))
        popleft = queue.popleft
        batch: list[MemoryDelivery] = []
        append = batch.append
        for _ in range(count):
            item = popleft()
            append(item if type(item) is MemoryDelivery else MemoryDelivery(self, item, 1))  # type: ignore[arg-type]
        if self._putters:
            for _ in range(min(count, len(self._putters))):
                wake_one(self._putters)
        return batch

    def finished(self) -> None:
        self.unfinished -= 1
        if self.unfinished == 0 and self._idle:
            for waiter in self._idle:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle.clear()

    def redeliver(self, message: Message, attempt: int, delay: float) -> None:
        if delay <= 0:
            self._requeue(message, attempt)
            return
        timer = asyncio.ensure_future(self._requeue_later(message, attempt, delay))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _requeue_later(self, message: Message, attempt: int, delay: float) -> None:
        await self._clock.sleep(delay)
        self._requeue(message, attempt)

    def _requeue(self, message: Message, attempt: int) -> None:
        # Redeliveries may exceed the capacity: refusing them would lose an accepted message.
        self._queue.append(MemoryDelivery(self, message, attempt))
        if self._getters:
            wake_one(self._getters)

    async def join(self) -> None:
        """Return once every accepted message was acknowledged."""
        if self.unfinished:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter

    def pending(self) -> list[Message]:
        """Messages queued and not yet handed to a consumer."""
        return [item.message if isinstance(item, MemoryDelivery) else item for item in self._queue]

    def wake_takers(self) -> None:
        while self._getters:
            wake_one(self._getters)

    def close(self) -> None:
        self.closed = True
        for timer in self._timers:
            timer.cancel()
        self.wake_takers()
        while self._putters:
            wake_one(self._putters)


class MemorySubscription:
    def __init__(self, channel: Channel, prefetch: int) -> None:
        self._channel = channel
        self._prefetch = prefetch
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[Sequence[MemoryDelivery]]:
        take, prefetch, stopped = self._channel.take, self._prefetch, self._stopped
        while not self._closed:
            batch = await take(prefetch, stopped)
            if batch is None:
                return
            yield batch
            await asyncio.sleep(0)  # let competing subscriptions of the group take their turn

    def _stopped(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        self._channel.wake_takers()  # the other takers of the channel wait again


class MemoryBroker:
    """The channels and dead letters that memory transports sharing this broker see."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, clock: Clock | None = None) -> None:
        self.capacity = capacity
        self.clock = clock or SystemClock()
        self.channels: dict[tuple[str, str], Channel] = {}
        self.dead_letters = MemoryDeadLetterStore()
        self._routes: dict[str, list[Channel]] = {}

    def channel(self, topic: str, group: str) -> Channel:
        """The channel of ``group`` on ``topic``, created on first use."""
        key = (validate_pattern(topic), group)
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = Channel(self.capacity, self.clock)
            self._routes.clear()
        return channel

    def route(self, topic: str) -> list[Channel]:
        """Every channel whose pattern matches ``topic``."""
        try:
            return self._routes[topic]
        except KeyError:
            found = [c for (pattern, _), c in self.channels.items() if matches(pattern, topic)]
            self._routes[topic] = found
            return found

    def offer(self, topic: str, message: Message) -> bool:
        """Queue ``message`` on every matching channel if all have room; False (and queue
        nothing) when one is full."""
        channels = self._routes.get(topic)
        if channels is None:
            channels = self.route(topic)
        if len(channels) == 1:
            return channels[0].offer(message)
        if any(c.full() for c in channels):
            return False
        for channel in channels:
            channel.offer(message)
        return True

    async def join(self) -> None:
        """Return once every message accepted so far was acknowledged by its groups."""
        for channel in list(self.channels.values()):
            await channel.join()

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


class MemoryTransport:
    """A handle on a :class:`MemoryBroker`: its own, or one shared with other handles.

    Closing a handle ends its subscriptions; closing the handle that made its own broker also
    closes the broker's channels.
    """

    features = Features(in_process=True, ordered_per_key=True)

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        clock: Clock | None = None,
        *,
        broker: MemoryBroker | None = None,
    ) -> None:
        self._owns_broker = broker is None
        self.broker = broker or MemoryBroker(capacity, clock)
        self._subscriptions: list[MemorySubscription] = []
        self._closed = False

    @property
    def channels(self) -> dict[tuple[str, str], Channel]:
        return self.broker.channels

    async def start(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the memory transport was closed")

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        self._check_open()
        validate_topic(topic)
        for channel in self.broker.route(topic):
            for message in messages:
                if not channel.offer(message):
                    await channel.put(message)

    def publish_nowait(self, topic: str, message: Message) -> None:
        """Queue ``message`` on every matching channel now, or raise QueueFull and queue none."""
        self._check_open()
        validate_topic(topic)
        if not self.broker.offer(topic, message):
            raise QueueFull(f"a subscriber of {topic!r} is at its capacity")

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> MemorySubscription:
        self._check_open()
        subscription = MemorySubscription(self.broker.channel(topic, group), prefetch)
        self._subscriptions.append(subscription)
        return subscription

    def dead_letters(self) -> DeadLetterStore:
        return self.broker.dead_letters

    async def join(self) -> None:
        await self.broker.join()

    async def aclose(self) -> None:
        self._closed = True
        for subscription in self._subscriptions:
            await subscription.aclose()
        self._subscriptions.clear()
        if self._owns_broker:
            self.broker.close()


def from_url(url: str) -> MemoryTransport:
    return MemoryTransport()
