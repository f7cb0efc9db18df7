"""RabbitMQ transport (aio-pika): ``amqp://guest:guest@127.0.0.1:5672/``.

Topology
--------
* One durable **topic exchange** (``tidings`` unless ``?exchange=`` says otherwise). A topic is the
  routing key; patterns translate to AMQP bindings: ``*`` stays ``*`` and a trailing ``>`` (one or
  more tokens) becomes ``*.#``.
* One durable **quorum queue per (group, pattern)**, named ``<exchange>:<group>:<pattern>`` and
  bound with the pattern, for messages without a key. Subscriptions of a group share it
  (competing consumers); every group has its own queue, so every group gets every message
  published after its queue exists (``subscribe()`` followed by ``publish()`` in the same
  transport is always in time: a publish waits for the queues of earlier subscriptions).
  Nothing replays older history.
* **Keyed messages** go to the durable topic exchange ``<exchange>.partitioned`` with routing key
  ``<partition>.<topic>`` (the key's partition among ``partitions``), and from there to one
  quorum queue per (group, pattern, partition), each consumed by one subscription of the group
  at a time (see :mod:`.partitioned` and :mod:`.leases`): a key's messages are handled in order.
* **Delays** live in shared quorum queues ``<exchange>.delay.<ms>``, one per delay bucket (buckets
  grow by 2^(1/4), so each holds delays within ~19% of each other), each behind a fanout exchange
  of the same name. ``nack(delay)`` publishes a copy there with a per-message expiration and the
  failing group's queue as routing key, then acks the original; on expiry RabbitMQ dead-letters
  the copy (``at-least-once`` strategy) to that one queue. A crash between the two steps delivers
  the message twice, never zero times.
* **Dead letters** are JSON records in the durable queue ``<exchange>.dead-letters`` (see
  :mod:`.dead_letters`).
* **Groups** are listed through the management HTTP API (see :mod:`.groups`).

Publishing uses publisher confirms: a batch is published as concurrent confirmed publishes (see
:mod:`.publish`) and ``publish`` returns when the broker confirmed every message. While the
connection is down (a broker restart) ``publish`` waits up to ``reconnect_timeout`` for aio-pika's
robust connection to come back, then sends again what was not confirmed (so a message may arrive
twice), or raises ServiceUnavailable. Subscriptions resume on the new connection by themselves
(see :mod:`.subscription`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl, urlsplit

import aio_pika
import aiormq
from aiormq.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelClosed,
    ChannelInvalidStateError,
    DeliveryError,
    ProbableAuthenticationError,
    PublishError,
)

from tidings.errors import ClosedError, ServiceUnavailable, TidingsError, TransportError
from tidings.message import Message
from tidings.topics import validate_pattern, validate_topic
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.partitions import partition_of
from tidings.transports.rabbitmq.dead_letters import RabbitMQDeadLetterStore
from tidings.transports.rabbitmq.groups import Management, drop_group, list_groups
from tidings.transports.rabbitmq.leases import RabbitMQLeases
from tidings.transports.rabbitmq.options import RabbitMQOptions
from tidings.transports.rabbitmq.partitioned import PartitionedSubscription
from tidings.transports.rabbitmq.publish import Publisher, Route, underlay_of
from tidings.transports.rabbitmq.subscription import Link, RabbitMQSubscription
from tidings.transports.rabbitmq.wire import (
    group_bindings,
    lease_queue,
    members_exchange,
    partition_key,
    partitioned_exchange,
    properties_of,
)
from tidings.urls import redact

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

__all__ = ["FEATURES", "RabbitMQTransport", "error_map", "from_url"]

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,  # a key's partition queue is consumed by one subscription at a time
    consumer_groups=True,
    native_delay=True,
    replays_history=False,
    wildcards=True,
)


def from_url(url: str) -> RabbitMQTransport:
    return RabbitMQTransport(RabbitMQOptions.from_url(url))


def error_map(url: str) -> ErrorMap:
    """How aiormq's errors read for the broker at ``url``: a refused login, a returned or
    nacked message and a channel closed under us (not by the broker's refusal) say so."""
    where = redact(url)

    def special(exc: BaseException, doing: str) -> TidingsError | None:
        if isinstance(exc, ProbableAuthenticationError):
            return TransportError(f"RabbitMQ refused the login at {where}")
        if isinstance(exc, PublishError):
            return TransportError(f"RabbitMQ returned a message ({doing}): no queue takes it")
        if isinstance(exc, DeliveryError):
            return TransportError(f"RabbitMQ did not accept a message ({doing})")
        if type(exc) is ChannelClosed:  # its subclasses are the broker refusing something
            return ServiceUnavailable(f"lost the channel to RabbitMQ at {where} ({doing}): {exc}")
        return None

    return ErrorMap(
        "RabbitMQ",
        where,
        unreachable=(AMQPConnectionError, ChannelInvalidStateError, OSError),
        client=(AMQPError,),
        special=special,
    )


class RabbitMQTransport:
    """The RabbitMQ transport. Constructing it does no I/O; :meth:`start` (or the first publish)
    connects. Safe for concurrent use by tasks of one event loop.

    Raises ServiceUnavailable when the broker cannot be reached (the message names the URL without
    its password), TransportError when the broker refuses something (login, a queue declared
    with other arguments, a message it nacks), ClosedError after :meth:`aclose`.
    """

    features = FEATURES

    def __init__(self, options: RabbitMQOptions | str | None = None) -> None:
        if options is None:
            options = RabbitMQOptions()
        elif isinstance(options, str):
            options = RabbitMQOptions.from_url(options)
        self.options = options
        self.errors = error_map(options.url)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._publisher = Publisher(options, self.errors, self._robust_channel, self._check_open)
        self._link = Link(self.connection, self._publisher, options.exchange, self.errors)
        self._start_lock = asyncio.Lock()
        self._subscriptions: set[PartitionedSubscription] = set()
        self._setups: set[asyncio.Task[None]] = set()
        self._dead_letters: RabbitMQDeadLetterStore | None = None
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"RabbitMQTransport({redact(self.options.url)!r})"

    # -- connection ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, open the publishing channel and declare the exchange. Idempotent."""
        self._check_open()
        async with self._start_lock:
            if self._connection is not None:
                return
            connection = await self._connect()
            try:
                with self.errors.mapping("opening the publishing channel"):
                    channel = connection.channel(publisher_confirms=True, on_return_raises=True)
                    await channel.initialize()
                    await self._declare_exchange(channel)
                channel.reopen_callbacks.add(self._declare_exchange)
            except BaseException:
                await connection.close()
                raise
            self._connection, self._channel = connection, channel
            for subscription in self._subscriptions:
                self._set_up(subscription)

    async def _connect(self) -> AbstractRobustConnection:
        options = self.options
        named = "name" in dict(parse_qsl(urlsplit(options.url).query))
        try:
            return await aio_pika.connect_robust(
                options.url,
                timeout=options.connect_timeout,
                reconnect_interval=options.reconnect_interval,
                # Named in the management UI, unless the URL names it (``?name=``).
                client_properties={"connection_name": "tidings"} if not named else None,
            )
        except (OSError, AMQPError) as exc:  # OSError covers TimeoutError
            raise self.errors.error(exc, "connecting") from exc

    async def _declare_exchange(self, channel: AbstractRobustChannel | None) -> None:
        """Run at start and by aio-pika on every new connection (an error here makes aio-pika
        log it and connect again: this callback is retried, never lost).

        On a new connection it also declares again the queues of subscriptions whose
        declaration failed (the broker went away meanwhile) before publishing goes on: a
        group's queue must exist before a message it subscribed to is published."""
        if channel is None:
            return
        underlay = await underlay_of(channel)
        exchange = self.options.exchange
        for name in (exchange, partitioned_exchange(exchange)):
            await underlay.exchange_declare(name, exchange_type="topic", durable=True)
        for subscription in self._subscriptions:
            if _failed(subscription.opening):
                self._set_up(subscription)
        if self._setups:
            await asyncio.wait(self._setups, timeout=self.options.reconnect_timeout)
        self._publisher.use(underlay)

    async def connection(self) -> AbstractRobustConnection:
        """The robust connection, connecting first if needed (for subscriptions and stores)."""
        if self._connection is None:
            await self.start()
        assert self._connection is not None
        return self._connection

    async def _robust_channel(self) -> AbstractRobustChannel:
        if self._connection is None:
            await self.start()
        assert self._channel is not None
        return self._channel

    async def open_channel(self) -> aiormq.Channel:
        """A plain (not restored after a reconnect) channel for a short job; the caller closes
        it. Waits up to ``reconnect_timeout`` for a lost connection to come back."""
        connection = await self.connection()
        try:
            async with asyncio.timeout(self.options.reconnect_timeout):
                await connection.ready()
        except TimeoutError:
            raise self._publisher.gone() from None
        with self.errors.mapping("opening a channel"):
            assert connection.transport is not None
            channel = await connection.transport.connection.channel(publisher_confirms=False)
            return cast("aiormq.Channel", channel)

    async def ping(self) -> None:
        """A passive declare of the exchange on the publishing channel (connecting first if
        needed): one round trip that changes nothing. Raises ServiceUnavailable at once while
        the connection is down (aio-pika reconnecting) or when the broker does not answer."""
        self._check_open()
        connection = await self.connection()
        if not connection.connected.is_set():
            raise ServiceUnavailable(
                f"RabbitMQ is not reachable at {self.errors.where}: reconnecting"
            )
        with self.errors.mapping("pinging"):
            underlay = await underlay_of(await self._robust_channel())
            await underlay.exchange_declare(self.options.exchange, passive=True)

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Publish ``messages`` (``data`` must be bytes) to ``topic``; returns once RabbitMQ
        confirmed all of them. Order is kept within one call.

        Raises ValueError for a wildcard topic, TypeError for data that is not bytes (nothing
        is sent then), ServiceUnavailable when the broker stays away for ``reconnect_timeout``
        (some messages may have been delivered), TransportError when the broker nacks a message.
        """
        self._check_open()
        validate_topic(topic)
        if not messages:
            return
        if self._connection is None:
            await self.start()
        if self._setups:
            # Queues of subscriptions made before this call must exist before it publishes.
            await asyncio.wait(self._setups, timeout=self.options.reconnect_timeout)
        bodies = [m.data for m in messages]
        if not all(isinstance(body, bytes) for body in bodies):
            raise TypeError("RabbitMQ carries bytes: encode the events first (the Bus does)")
        props = [properties_of(m) for m in messages]
        await self._publisher.send(self._routes(topic, messages), bodies, props, mandatory=False)

    def _routes(self, topic: str, messages: Sequence[Message]) -> list[Route]:
        """Where each message goes: to its key's partition, or to the topic if it has none."""
        exchange, count = self.options.exchange, self.options.partitions
        keyed = partitioned_exchange(exchange)
        return [
            (exchange, topic) if m.key is None
            else (keyed, partition_key(partition_of(m.key, count), topic))
            for m in messages
        ]  # fmt: skip

    # -- consuming ----------------------------------------------------------------------------

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> PartitionedSubscription:
        """A subscription of ``group`` to ``topic`` (or a pattern). Its queues are declared
        right away when the transport runs (or at :meth:`start`), so that messages published
        after this call reach the group. ``prefetch`` bounds the deliveries not yet settled of
        each queue it consumes (the topic's, and each partition's it owns)."""
        self._check_open()
        validate_pattern(topic)
        if not 1 <= prefetch <= 65535:
            raise ValueError("prefetch must be between 1 and 65535")
        options, link = self.options, self._link
        exchange = options.exchange
        bindings = group_bindings(exchange, group, topic, options.partitions)

        def partition(n: int) -> RabbitMQSubscription:
            return RabbitMQSubscription(
                link, topic, group, bindings[n + 1 : n + 2], prefetch, resume=False
            )

        leases = RabbitMQLeases(
            self.open_channel, self.errors,
            lease_queue=lambda n: lease_queue(exchange, group, topic, n),
            members=members_exchange(exchange, group, topic), lease=options.lease,
        )  # fmt: skip
        subscription = PartitionedSubscription(
            RabbitMQSubscription(link, topic, group, bindings, prefetch),
            partition, leases, count=options.partitions, forget=self._forget,
        )  # fmt: skip
        self._subscriptions.add(subscription)
        if self._connection is not None:
            self._set_up(subscription)
        return subscription

    def _set_up(self, subscription: PartitionedSubscription) -> None:
        task = asyncio.ensure_future(subscription.open())
        subscription.opening = task
        self._setups.add(task)
        task.add_done_callback(self._setups.discard)

    def _forget(self, subscription: PartitionedSubscription) -> None:
        self._subscriptions.discard(subscription)

    # -- groups -------------------------------------------------------------------------------

    async def groups(self) -> list[GroupInfo]:
        """Every group's subscription on this transport's exchange, sorted by topic then group.

        Needs the management HTTP API (see :mod:`.groups`): raises ServiceUnavailable naming
        ``rabbitmq-plugins enable rabbitmq_management`` and ``management_url`` without it."""
        management = Management(self.options)
        return await list_groups(management, self.options.exchange, self.open_channel, self.errors)

    async def drop_group(self, topic: str, group: str) -> None:
        """Delete the queues of ``group``'s subscription to ``topic``; raises NotFound if there
        are none, TransportError while they have consumers (stop them first)."""
        options = self.options
        await drop_group(
            options.exchange, topic, group, options.partitions, self.open_channel, self.errors
        )

    # -- the rest -----------------------------------------------------------------------------

    def dead_letters(self) -> RabbitMQDeadLetterStore:
        """Dead letters in the durable queue ``<exchange>.dead-letters`` of the same broker."""
        if self._dead_letters is None:
            self._dead_letters = RabbitMQDeadLetterStore(
                f"{self.options.exchange}.dead-letters",
                publisher=self._publisher,
                open_channel=self.open_channel,
                errors=self.errors,
                reconnect_timeout=self.options.reconnect_timeout,
            )
        return self._dead_letters

    async def aclose(self) -> None:
        """Wait for publishes in progress, settle what subscriptions recorded (acks are sent,
        deliveries never settled go back to their queues), then disconnect. Idempotent; calls
        made while it closes return once it closed."""
        if self._closing is None:
            self._closed = True
            for subscription in self._subscriptions:
                subscription.stop()  # at once: nothing more is handed out from here on
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        await self._publisher.idle()
        for task in list(self._setups):
            task.cancel()
        await asyncio.gather(*self._setups, return_exceptions=True)
        for subscription in list(self._subscriptions):
            await subscription.shutdown()
        if self._connection is not None:
            await self._connection.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")


def _failed(opening: asyncio.Future[None] | None) -> bool:
    """Whether the declaration ``opening`` ended on an error."""
    return (
        opening is not None
        and opening.done()
        and not opening.cancelled()
        and opening.exception() is not None
    )
