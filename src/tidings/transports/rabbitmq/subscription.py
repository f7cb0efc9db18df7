"""RabbitMQ subscriptions: a consumer on a group's quorum queue, its deliveries and bulk acks.

A subscription consumes one queue: a group's queue of a topic, or one of its partitions (see
:mod:`.partitioned`, which joins them). It declares that queue, and any others it is told to,
with their bindings before it consumes.

Each subscription has its own channel, so its prefetch (``basic.qos``) bounds exactly its own
unsettled deliveries and its delivery tags are its own. Deliveries arrive pushed by the broker and
are handed out in batches of whatever arrived since the last batch.

Attempts: see :func:`tidings.transports.rabbitmq.wire.received`. A delivery that was prefetched but
never handed out when its subscription closed also counts as returned.

Acks are recorded and written in bulk by a :class:`~tidings.transports.kit.settle.Settler`: one
``basic.ack(multiple=True)`` for the longest settled run of delivery tags, single acks for tags
settled out of order. A nack without delay (``basic.nack(requeue=True)``) is sent at once, before
any later multiple ack can cover its tag. After a reconnect the tags of the old channel are void:
acks for them are dropped and the broker delivers those messages again.

Closing waits until every delivery handed out is settled, writes the acks, cancels the consumer
and then closes the channel. The order matters on RabbitMQ 3.10: a quorum queue ignores acks for a
consumer already cancelled, and a channel closed right after acks may have them taken back; the
confirmed cancel travels through the queue behind the acks, so they are applied before the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

from tidings.errors import TidingsError, TransportError
from tidings.message import Message
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.settle import Settler
from tidings.transports.rabbitmq.publish import Publisher, lost, underlay_of
from tidings.transports.rabbitmq.wire import (
    GROUP,
    QUORUM,
    TOPIC,
    Binding,
    Received,
    partitioned_exchange,
    received,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
    from aiormq import Channel
    from aiormq.abc import DeliveredMessage

__all__ = ["Link", "RabbitMQDelivery", "RabbitMQSubscription"]

_log = logging.getLogger("tidings.transports.rabbitmq")

_MIN_DELAY = 0.001
"""Shorter nack delays requeue at once."""
_GONE = (AMQPError, ChannelInvalidStateError, ConnectionError, asyncio.CancelledError)
"""Errors of a channel that went away: its deliveries come again, nothing is left to do."""


@dataclass(frozen=True, slots=True)
class Link:
    """What a subscription uses of its transport, handed to it by the transport."""

    connection: Callable[[], Awaitable[AbstractRobustConnection]]
    """The robust connection, connecting (and declaring the subscriptions' queues) first."""
    publisher: Publisher
    """Stores the delayed copies of ``nack(delay)``."""
    exchange: str
    errors: ErrorMap


class Acks:
    """The settlement of one channel's delivery tags, written in bulk."""

    __slots__ = ("_low", "_settled", "channel", "settler")

    def __init__(self, channel: Channel, name: str) -> None:
        self.channel = channel
        self._low = 1  # every tag below it is settled
        self._settled: set[int] = set()  # settled tags from _low on
        self.settler: Settler[int] = Settler(self._send, name=name)

    def ack(self, tag: int) -> None:
        self.settler.record(tag)

    async def requeue(self, tag: int) -> None:
        try:
            await self.channel.basic_nack(tag, requeue=True, wait=False)
        except _GONE:
            return  # the channel closed: the broker requeued it already
        self._settled.add(tag)

    async def _send(self, tags: list[int]) -> None:
        """Ack ``tags``: the run below the lowest unsettled tag in one frame (multiple)."""
        settled = self._settled
        settled.update(tags)
        low = self._low
        while low in settled:
            settled.discard(low)
            low += 1
        self._low = low
        run = [tag for tag in tags if tag < low]
        try:
            if run:
                await self.channel.basic_ack(max(run), multiple=True, wait=False)
            for tag in tags:
                if tag >= low:
                    await self.channel.basic_ack(tag, wait=False)
        except _GONE:
            pass  # the channel closed: the broker delivers these again


class RabbitMQDelivery:
    """One message from a group's queue; ``ack``/``nack`` are idempotent (the first one counts)."""

    __slots__ = ("_acks", "_done", "_subscription", "_tag", "attempt", "message", "topic")

    def __init__(self, subscription: RabbitMQSubscription, acks: Acks, got: Received) -> None:
        self._subscription = subscription
        self._acks = acks
        self._tag = got.tag
        self._done = False
        self.message: Message = got.message
        self.attempt = got.attempt
        self.topic = got.topic
        """The topic the message was published to (the subscription's may be a pattern)."""

    async def ack(self) -> None:
        if not self._done:
            self._done = True
            self._acks.ack(self._tag)
            self._subscription.settled()

    async def nack(self, delay: float = 0.0) -> None:
        """Deliver again after ``delay`` seconds (through a delay queue) or at once (requeue).

        Raises TransportError when the delayed copy cannot be stored; the message is then left
        unsettled and comes again once its channel closes."""
        if self._done:
            return
        self._done = True
        subscription = self._subscription
        try:
            if delay < _MIN_DELAY:
                await self._acks.requeue(self._tag)
            else:
                await subscription.link.publisher.publish_later(
                    self.message, self.topic, self.attempt + 1, delay, subscription.queue
                )
                self._acks.ack(self._tag)
        finally:
            subscription.settled()


class RabbitMQSubscription:
    """Batches of deliveries from a queue of (``topic``, ``group``) until :meth:`aclose`: the
    first of ``bindings``, which are all declared. With ``resume`` it consumes again on a new
    connection after a reconnect; without, its iteration ends then.

    Each iteration's first batch, once it consumes, is empty: it tells the iterating task that
    fetching works (again, after an error) before any message comes."""

    def __init__(
        self,
        link: Link,
        topic: str,
        group: str,
        bindings: Sequence[Binding],
        prefetch: int,
        *,
        resume: bool = True,
    ) -> None:
        self.link = link
        self.topic = topic
        self.group = group
        self.queue = bindings[0].queue
        self._bindings = bindings
        self._keyed = partitioned_exchange(link.exchange)
        self._resume = resume
        self._finished = asyncio.Event()
        self.opening: asyncio.Future[None] | None = None
        self._prefetch = prefetch
        self._tag = f"tidings.{uuid.uuid4().hex}"
        self._channel: AbstractRobustChannel | None = None
        self._acks: Acks | None = None
        self._ready: list[RabbitMQDelivery] = []
        self._waiter: asyncio.Future[None] | None = None
        self._outstanding = 0  # handed out, not yet settled
        self._consuming = False
        self._stopped = False  # hands out nothing more
        self._closed = False  # aclose() ran
        self._error: TidingsError | None = None
        self._closing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RabbitMQSubscription({self.queue!r})"

    async def open(self) -> None:
        """Open the channel and declare the queue and its binding (before any iteration).
        Raises ServiceUnavailable at once while the connection is down (aio-pika reconnecting)."""
        connection = await self.link.connection()
        doing = f"declaring the queue {self.queue!r}"
        if not connection.connected.is_set():
            # A channel opened now fails on the closed connection with a bare RuntimeError.
            raise self.link.errors.error(ConnectionError("reconnecting"), doing)
        channel = connection.channel(publisher_confirms=False)
        try:
            with self.link.errors.mapping(doing):
                await channel.initialize()
                await channel.set_qos(prefetch_count=self._prefetch)
                await self._declare(await underlay_of(channel))
        except BaseException:
            await channel.close()
            raise
        if self._closed:  # closed while opening: nothing will consume
            await channel.close()
            return
        channel.reopen_callbacks.add(self._reopened)
        self._channel = channel

    async def _declare(self, channel: Channel) -> None:
        """The queues, and their bindings named by group and topic (for ``groups()``)."""
        named: dict[str, Any] = {GROUP: self.group, TOPIC: self.topic}
        for binding in self._bindings:
            await channel.queue_declare(binding.queue, durable=True, arguments=QUORUM)
            await channel.queue_bind(
                binding.queue, binding.exchange, routing_key=binding.key, arguments=named
            )

    async def _reopened(self, channel: AbstractRobustChannel | None) -> None:
        """Run by aio-pika on every new connection: declare again, consume again. A lost
        connection ends it quietly (the next reconnect runs it again); anything else is logged
        once and ends the iteration with it, never silently."""
        self._ready = []  # deliveries not handed out yet were requeued by the broker
        if channel is None:
            return
        try:
            underlay = await underlay_of(channel)
            await self._declare(underlay)
            if not self._resume:
                self.stop()
            elif self._consuming and not self._stopped:
                await self._consume(underlay)
        except Exception as exc:
            if lost(exc):
                return
            _log.exception("%r could not resume after a reconnect", self)
            self._error = self.link.errors.error(exc, f"resuming {self.queue!r}")
            self._wake()

    async def _consume(self, channel: Channel) -> None:
        if self._tag in channel.consumers:
            return
        self._acks = Acks(channel, f"RabbitMQ queue {self.queue!r}")
        channel.on_consumer_cancel_callbacks.add(self._cancelled)
        await channel.basic_consume(self.queue, self._on_message, consumer_tag=self._tag)

    async def _on_message(self, delivered: DeliveredMessage) -> None:
        assert self._acks is not None
        if self._stopped:
            return  # never handed out: it goes back to the queue when the channel closes
        got = received(delivered, self._keyed)
        self._ready.append(RabbitMQDelivery(self, self._acks, got))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _cancelled(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag == self._tag:
            self._error = TransportError(
                f"RabbitMQ cancelled the consumer of {self.queue!r} (was the queue deleted?)"
            )
            self._wake()

    async def __aiter__(self) -> AsyncIterator[list[RabbitMQDelivery]]:
        if self._stopped:
            return
        if self.opening is None:
            await self.link.connection()  # starts the transport: it declares this queue too
        opening = self.opening
        assert opening is not None
        await asyncio.wait([opening])  # the transport may cancel it by closing
        if self._stopped or opening.cancelled():
            return
        opening.result()  # raises what went wrong
        assert self._channel is not None
        self._consuming = True
        with contextlib.suppress(*_GONE):  # reconnecting: _reopened consumes on the new channel
            await self._consume(await underlay_of(self._channel))
        # Consuming: a consumer restarting after a failure runs again, though no message may
        # come for a long while (or it would read as restarting until then).
        yield []
        loop = asyncio.get_running_loop()
        while not self._stopped:
            if self._ready:
                batch, self._ready = self._ready, []
                self._outstanding += len(batch)
                yield batch
            elif self._error is not None:
                raise self._error
            else:
                self._waiter = loop.create_future()
                await self._waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def settled(self) -> None:
        self._outstanding -= 1
        if self._closed and self._outstanding == 0 and self._closing is None:
            self._closing = asyncio.ensure_future(self._close_channel())

    def stop(self) -> None:
        """Hand out nothing more, from now on (the iteration ends)."""
        self._stopped = True
        self._wake()

    async def aclose(self) -> None:
        """Stop handing out deliveries. Those handed out can still be settled; once they all
        are, the channel closes and what was prefetched but not handed out goes back to the
        queue (counted as a return). Deliveries never settled come again when the transport
        closes or the process dies. Idempotent.

        The consumer is cancelled only then: RabbitMQ 3.10 drops acks that a quorum queue
        receives for a cancelled consumer, so the channel keeps consuming until it closes."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._ready = []
        if self._channel is None:
            self._finished.set()
        elif self._outstanding == 0 and self._closing is None:
            self._closing = asyncio.ensure_future(self._close_channel())
            await self._closing

    async def shutdown(self) -> None:
        """For the transport's close: send the recorded acks, then close the channel (deliveries
        never settled go back to the queue)."""
        await self.aclose()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_channel())
        await self._closing

    async def _close_channel(self) -> None:
        try:
            if self._acks is not None:
                await self._acks.settler.close()
            if self._channel is not None:
                underlay = await underlay_of(self._channel)
                if self._consuming and not underlay.is_closed:
                    # The cancel reaches the quorum queue after the acks sent before it, so once
                    # it is confirmed they were applied. A plain close right after acks can make
                    # a quorum queue take back messages that were acked (RabbitMQ 3.10).
                    await underlay.basic_cancel(self._tag)
                await self._channel.close()
        except _GONE:
            pass
        except Exception:
            _log.exception("closing the channel of %r failed", self)
        finally:
            self._finished.set()

    async def finished(self) -> None:
        """Return once the channel closed after :meth:`aclose` (what was handed out is settled
        and its acks applied, or the channel was lost)."""
        await self._finished.wait()
