"""The in-process transport: bounded channels, one per (pattern, group).

Messages carry event objects (``features.in_process``): nothing is encoded. A
:class:`MemoryBroker` holds a channel per (pattern, group). ``capacity`` bounds, exactly, the
messages of a group that wait for a handler: those queued in the channel plus those a consumer
took ahead (its prefetch) and has not started yet, as a Go channel of that size would. A
publisher waits while a channel is full (``publish_nowait`` raises QueueFull instead); a message
published to several groups is queued on all of them or, if the publisher is cancelled while it
waits for room, on none. Subscriptions of one group take from the same channel (competing
consumers). ``nack(delay)`` puts the message back after the delay with its attempt counted.
Several :class:`MemoryTransport` handles may share one broker, as clients share a server.
Nothing survives the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from tidings.clock import Clock, SystemClock
from tidings.dead_letters import DeadLetterStore, MemoryDeadLetterStore
from tidings.errors import ClosedError, QueueFull
from tidings.message import Message
from tidings.topics import CACHE_SIZE, matches, validate_pattern, validate_topic
from tidings.transports.base import Features
from tidings.transports.memory.channel import Channel, MemoryDelivery

__all__ = ["MemoryBroker", "MemoryTransport", "from_url"]

DEFAULT_CAPACITY = 1024
"""Messages per group waiting for a handler, unless ``capacity`` says otherwise."""


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
        self.dead_letters = MemoryDeadLetterStore(clock=self.clock)
        self._routes: dict[str, list[Channel]] = {}
        self._retired: set[Channel] = set()

    def channel(self, topic: str, group: str) -> Channel:
        """The channel of ``group`` on ``topic``, created on first use."""
        key = (validate_pattern(topic), group)
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = Channel(*key, self.capacity, self.clock)
            self._routes.clear()
        return channel

    def retire(self, topic: str, group: str) -> None:
        """Route no more messages to ``group`` on ``topic``; its takers end once what the
        channel holds is finished (a later subscription of the group gets a new channel)."""
        channel = self.channels.pop((validate_pattern(topic), group), None)
        if channel is not None:
            self._routes.clear()
            channel.retired = True
            self._retired.add(channel)
            channel.wake_takers()

    def take_unhandled(self) -> list[tuple[str, str, list[Message]]]:
        """Close every channel (retired ones too); returns each one's pattern, group and the
        messages it held that no consumer has."""
        self._retired = {c for c in self._retired if c.unfinished}
        held = []
        for channel in (*self.channels.values(), *self._retired):
            held.append((channel.topic, channel.group, channel.pending()))
            channel.close()
        return held

    def route(self, topic: str) -> list[Channel]:
        """Every channel whose pattern matches ``topic``; raises ValueError for a name that is
        not a topic (checked once per topic: the cache holds only checked ones)."""
        try:
            return self._routes[topic]
        except KeyError:
            validate_topic(topic)
            found = [c for (pattern, _), c in self.channels.items() if matches(pattern, topic)]
            if len(self._routes) >= CACHE_SIZE:
                self._routes.clear()  # bounded: many distinct topics cost a recomputation
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

    async def put(self, topic: str, message: Message) -> None:
        """Queue ``message`` on every matching channel, waiting until all have room at once.
        Cancelled while waiting, it is queued on none."""
        woken: Channel | None = None
        while True:
            channels = self.route(topic)
            full = next((c for c in channels if c.full()), None)
            if full is None:
                for channel in channels:
                    channel.offer(message)
                if woken is not None:
                    woken.pass_room()  # room may remain for the next publisher
                return
            if woken is not None and woken is not full:
                woken.pass_room()  # this publisher waits elsewhere: do not keep the room
            await full.room()
            woken = full

    async def join(self) -> None:
        """Return once every message accepted so far was acknowledged by its groups."""
        for channel in (*self.channels.values(), *self._retired):
            await channel.join()

    def close(self) -> None:
        for channel in (*self.channels.values(), *self._retired):
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
        self.offer, self.route = self.broker.offer, self.broker.route  # one call, not two
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
        """Queue each message on every group of ``topic``: on all of them or on none."""
        self._check_open()
        broker = self.broker
        for message in messages:
            if not broker.offer(topic, message):
                await broker.put(topic, message)

    def publish_nowait(self, topic: str, message: Message) -> None:
        """Queue ``message`` on every matching channel now, or raise QueueFull and queue none."""
        self._check_open()
        if not self.broker.offer(topic, message):
            raise QueueFull(f"a subscriber of {topic!r} is at its capacity")

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> MemorySubscription:
        self._check_open()
        subscription = MemorySubscription(self.broker.channel(topic, group), prefetch)
        self._subscriptions.append(subscription)
        return subscription

    def dead_letters(self) -> DeadLetterStore:
        return self.broker.dead_letters

    def retire(self, topic: str, group: str) -> None:
        self.broker.retire(topic, group)

    async def join(self) -> None:
        await self.broker.join()

    def take_unhandled(self) -> list[tuple[str, str, list[Message]]]:
        """What the broker's channels hold that no consumer has, closing them: for a bus that
        closes before handling it (see :meth:`MemoryBroker.take_unhandled`)."""
        return self.broker.take_unhandled()

    async def aclose(self) -> None:
        self._closed = True
        for subscription in self._subscriptions:
            await subscription.aclose()
        self._subscriptions.clear()
        if self._owns_broker:
            self.broker.close()


def from_url(url: str) -> MemoryTransport:
    return MemoryTransport()
