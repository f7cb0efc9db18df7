"""RabbitMQ subscriptions: a consumer on a group's quorum queue, its deliveries and bulk acks.

Each subscription has its own channel, so its prefetch (``basic.qos``) bounds exactly its own
unsettled deliveries and its delivery tags are its own. Deliveries arrive pushed by the broker and
are handed out in batches of whatever arrived since the last batch.

Attempts: the quorum queue counts returns of a message (``x-delivery-count``: a nack, or a consumer
that went away holding it); a copy published again for a delay carries the attempt it will be in
``tidings-attempt``. The attempt is their sum, 1 on the first delivery. A delivery that was
prefetched but never handed out when its subscription closed also counts as returned.

Acks are recorded and sent on the next turn of the event loop: one ``basic.ack(multiple=True)``
for the longest settled run of delivery tags, single acks for tags settled out of order. A nack
without delay (``basic.nack(requeue=True)``) is sent at once, before any later multiple ack can
cover its tag. After a reconnect the tags of the old channel are void: acks for them are dropped
and the broker delivers those messages again.

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
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

from tidings.errors import TransportError
from tidings.message import Message
from tidings.transports.kit.wire import ATTEMPT, KEY, TIME, from_wire

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustChannel
    from aiormq import Channel
    from aiormq.abc import DeliveredMessage

    from tidings.transports.rabbitmq import RabbitMQTransport

__all__ = [
    "QUORUM",
    "RabbitMQDelivery",
    "RabbitMQSubscription",
    "binding_key",
    "properties_of",
]

_log = logging.getLogger("tidings.transports.rabbitmq")

QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
DELIVERY_COUNT = "x-delivery-count"
TOPIC = "tidings-topic"
"""On a delayed copy (whose routing key is its queue's name): the topic it was published to."""
_MIN_DELAY = 0.001
"""Shorter nack delays requeue at once."""
_BROKER = frozenset(
    {
        TOPIC,
        DELIVERY_COUNT,
        # Set by RabbitMQ when a delayed copy is dead-lettered back to its queue.
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
"""Headers that belong to the broker or to tidings' delayed copies, not to the message."""
_GONE = (AMQPError, ChannelInvalidStateError, ConnectionError, asyncio.CancelledError)
"""Errors of a channel that went away: its deliveries come again, nothing is left to do."""


async def underlay_of(channel: AbstractRobustChannel) -> Channel:
    """The aiormq channel under an aio-pika one (the fast path for publishes and acks)."""
    return cast("Channel", await channel.get_underlay_channel())


def binding_key(pattern: str) -> str:
    """The AMQP binding for a tidings topic pattern: ``a.>`` (one or more tokens) is ``a.*.#``."""
    if pattern.endswith(">"):
        return pattern[:-1] + "*.#"
    return pattern


def properties_of(
    message: Message, *, retry: tuple[str, int] | None = None, expiration: str | None = None
) -> Basic.Properties:
    """AMQP properties for ``message``: id and type natively, the rest as headers; ``retry``
    is the (topic, attempt) of a delayed copy."""
    headers: dict[str, Any] = dict(message.headers) if message.headers else {}
    headers[TIME] = repr(message.timestamp)
    if message.key is not None:
        headers[KEY] = message.key
    if retry is not None:
        headers[TOPIC], attempt = retry
        headers[ATTEMPT] = str(attempt)
    return Basic.Properties(
        delivery_mode=2,
        message_id=message.id,
        message_type=message.type,
        headers=headers,
        expiration=expiration,
    )


class Acks:
    """The settlement of one channel's delivery tags, sent in bulk."""

    __slots__ = ("_flushing", "_low", "_pending", "_settled", "channel")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._low = 1  # every tag below it is settled
        self._settled: set[int] = set()  # settled tags from _low on
        self._pending: list[int] = []
        self._flushing: asyncio.Task[None] | None = None

    def ack(self, tag: int) -> None:
        self._pending.append(tag)
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())

    async def requeue(self, tag: int) -> None:
        try:
            await self.channel.basic_nack(tag, requeue=True, wait=False)
        except _GONE:
            return  # the channel closed: the broker requeued it already
        self._settled.add(tag)

    async def drain(self) -> None:
        """Return once every recorded ack was written."""
        while self._flushing is not None:
            await self._flushing

    async def _flush(self) -> None:
        channel = self.channel
        try:
            while self._pending:
                tags, self._pending = self._pending, []
                settled = self._settled
                settled.update(tags)
                low = self._low
                while low in settled:
                    settled.discard(low)
                    low += 1
                self._low = low
                run = [tag for tag in tags if tag < low]
                if run:
                    await channel.basic_ack(max(run), multiple=True, wait=False)
                for tag in tags:
                    if tag >= low:
                        await channel.basic_ack(tag, wait=False)
        except _GONE:
            self._pending.clear()  # the channel closed: the broker delivers these again
        finally:
            self._flushing = None


class RabbitMQDelivery:
    """One message from a group's queue; ``ack``/``nack`` are idempotent (the first one counts)."""

    __slots__ = ("_acks", "_done", "_subscription", "_tag", "attempt", "message", "topic")

    def __init__(
        self,
        subscription: RabbitMQSubscription,
        acks: Acks,
        tag: int,
        message: Message,
        attempt: int,
        topic: str,
    ) -> None:
        self._subscription = subscription
        self._acks = acks
        self._tag = tag
        self._done = False
        self.message = message
        self.attempt = attempt
        self.topic = topic
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
                await subscription.transport.publish_later(
                    self.message, self.topic, self.attempt + 1, delay, subscription.queue
                )
                self._acks.ack(self._tag)
        finally:
            subscription.settled()


class RabbitMQSubscription:
    """Batches of deliveries from the queue of (``topic``, ``group``) until :meth:`aclose`."""

    def __init__(
        self, transport: RabbitMQTransport, topic: str, group: str, queue: str, prefetch: int
    ) -> None:
        self.transport = transport
        self.topic = topic
        self.group = group
        self.queue = queue
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
        self._error: TransportError | None = None
        self._closing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RabbitMQSubscription({self.queue!r})"

    async def open(self) -> None:
        """Open the channel and declare the queue and its binding (before any iteration)."""
        connection = await self.transport.connection()
        channel = connection.channel(publisher_confirms=False)
        await channel.initialize()
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            await self._declare(await underlay_of(channel))
        except BaseException as exc:
            await channel.close()
            if isinstance(exc, AMQPError):
                raise TransportError(f"cannot declare the queue {self.queue!r}: {exc}") from exc
            raise
        channel.reopen_callbacks.add(self._reopened)
        self._channel = channel

    async def _declare(self, channel: Channel) -> None:
        await channel.queue_declare(self.queue, durable=True, arguments=QUORUM)
        await channel.queue_bind(
            self.queue, self.transport.options.exchange, routing_key=binding_key(self.topic)
        )

    async def _reopened(self, channel: AbstractRobustChannel | None) -> None:
        # A new connection: deliveries not handed out yet were requeued by the broker.
        self._ready = []
        if channel is None:
            return
        underlay = await underlay_of(channel)
        await self._declare(underlay)
        if self._consuming and not self._stopped:
            await self._consume(underlay)

    async def _consume(self, channel: Channel) -> None:
        if self._tag in channel.consumers:
            return
        self._acks = Acks(channel)
        channel.on_consumer_cancel_callbacks.add(self._cancelled)
        await channel.basic_consume(self.queue, self._on_message, consumer_tag=self._tag)

    async def _on_message(self, delivered: DeliveredMessage) -> None:
        assert self._acks is not None
        if self._stopped:
            return  # never handed out: it goes back to the queue when the channel closes
        self._ready.append(_delivery(self, self._acks, delivered))
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
            await self.transport.start()  # declares this subscription's queue too
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
            self.transport.forget(self)
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
                await self._acks.drain()
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
            self.transport.forget(self)


def _delivery(
    subscription: RabbitMQSubscription, acks: Acks, delivered: DeliveredMessage
) -> RabbitMQDelivery:
    """The delivery of an AMQP message, ours or another producer's: the envelope goes through
    :func:`~tidings.transports.kit.wire.from_wire`, so garbage in it falls back, never raises."""
    props = delivered.header.properties
    frame = cast(Basic.Deliver, delivered.delivery)
    headers: dict[str, Any] | None = props.headers
    topic = frame.routing_key or ""
    own = {k: v for k, v in headers.items() if k not in _BROKER} if headers else None
    message, attempt = from_wire(
        topic, delivered.body, own, kind=props.message_type, ident=props.message_id
    )
    if headers:
        copied = headers.get(TOPIC)  # a delayed copy, back from its queue
        if type(copied) is str and copied:
            topic = copied
        count = headers.get(DELIVERY_COUNT)  # requeued after a consumer went away
        if type(count) is int and count > 0:
            attempt += count
    return RabbitMQDelivery(subscription, acks, frame.delivery_tag or 0, message, attempt, topic)
