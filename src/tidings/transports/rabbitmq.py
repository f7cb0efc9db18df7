"""RabbitMQ transport (aio-pika): ``amqp://guest:guest@127.0.0.1:5672/``.

Topology
--------
* One durable **topic exchange** (``tidings`` unless ``?exchange=`` says otherwise). A topic is the
  routing key; patterns translate to AMQP bindings: ``*`` stays ``*`` and a trailing ``>`` (one or
  more tokens) becomes ``*.#``.
* One durable **quorum queue per (group, pattern)**, named ``<exchange>:<group>:<pattern>`` and
  bound with the pattern. Subscriptions of a group share it (competing consumers); every group has
  its own queue, so every group gets every message published after its queue exists
  (``subscribe()`` followed by ``publish()`` in the same transport is always in time: a publish
  waits for the queues of earlier subscriptions). Nothing replays older history.
* **Delays** live in shared quorum queues ``<exchange>.delay.<ms>``, one per delay bucket (buckets
  grow by 2^(1/4), so each holds delays within ~19% of each other), each behind a fanout exchange
  of the same name. ``nack(delay)`` publishes a copy there with a per-message expiration and the
  failing group's queue as routing key, then acks the original; on expiry RabbitMQ dead-letters
  the copy (``at-least-once`` strategy) to that one queue. A crash between the two steps delivers
  the message twice, never zero times.
* **Dead letters** are JSON records in the durable queue ``<exchange>.dead-letters`` (see
  :mod:`tidings.transports.rabbitmq_deadletters`).

Publishing uses publisher confirms: a batch is written 512 messages per socket write (see
:mod:`tidings.transports.rabbitmq_publish`) and ``publish`` returns when the broker confirmed every
message. While the connection is down (a broker restart) ``publish`` waits up to
``reconnect_timeout`` for aio-pika's robust connection to come back, then sends again what was not
confirmed (so a message may arrive twice), or raises ServiceUnavailable. Subscriptions resume on
the new connection by themselves (see :mod:`tidings.transports.rabbitmq_queue`).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import aio_pika
import aiormq
from aiormq.exceptions import DeliveryError, PublishError
from pamqp.commands import Basic

from tidings.errors import ClosedError, ServiceUnavailable, TransportError
from tidings.message import Message
from tidings.topics import validate_pattern, validate_topic
from tidings.transports import rabbitmq_publish, redact
from tidings.transports.base import Features
from tidings.transports.kit.options import redacted_repr
from tidings.transports.rabbitmq_deadletters import RabbitMQDeadLetterStore
from tidings.transports.rabbitmq_queue import (
    QUORUM,
    RabbitMQSubscription,
    binding_key,
    properties_of,
    underlay_of,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

__all__ = [
    "FEATURES",
    "RabbitMQOptions",
    "RabbitMQTransport",
    "binding_key",
    "delay_bucket",
    "from_url",
    "queue_name",
]

FEATURES = Features(
    persistent=True,
    ordered_per_key=False,  # competing consumers of a queue and requeues interleave keys
    consumer_groups=True,
    native_delay=True,
    replays_history=False,
    wildcards=True,
)

_MAX_NAME = 255
_PLAIN = re.compile(r"[a-zA-Z0-9_.:,/ -]*")
"""Name characters RabbitMQ clients accept, less ``+`` and ``#`` (standing for ``*`` and ``>``)
and ``@`` (which starts a digest)."""
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.:,/ +#-]")


@dataclass(frozen=True, slots=True)
class RabbitMQOptions:
    """Settings of the RabbitMQ transport. The fields below can be given as URL query parameters;
    every other parameter (``heartbeat``, ``name``, ``cafile``, ``certfile``, ``keyfile``,
    ``no_verify_ssl``, ...) is passed on to aio-pika. ``amqps://`` connects with TLS."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """The broker URL as aio-pika takes it (credentials, virtual host, client options)."""
    exchange: str = "tidings"
    """The topic exchange; also the prefix of every queue this transport declares."""
    reconnect_interval: float = 1.0
    """Seconds between reconnection attempts after the connection was lost."""
    reconnect_timeout: float = 30.0
    """Seconds a publish (or a dead-letter operation) waits for a lost connection to come back
    before raising ServiceUnavailable."""
    connect_timeout: float = 10.0
    """Seconds the first connection attempt may take."""

    def __repr__(self) -> str:
        return redacted_repr(self)

    @classmethod
    def from_url(cls, url: str) -> RabbitMQOptions:
        """Split ``amqp://…?exchange=orders&reconnect_timeout=60`` into options and the URL
        aio-pika gets. Raises ValueError for another scheme or a bad value."""
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"expected an amqp:// or amqps:// URL, got {redact(url)!r}")
        ours = {f.name for f in fields(cls)} - {"url"}
        values: dict[str, Any] = {}
        rest = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "exchange":
                values[name] = value
            elif name in ours:
                values[name] = float(value)
                if values[name] <= 0:
                    raise ValueError(f"{name} must be positive, not {value!r}")
            else:
                rest.append((name, value))
        options = cls(parts._replace(query=urlencode(rest)).geturl(), **values)
        name = options.exchange
        if not _PLAIN.fullmatch(name) or not 0 < len(name) <= 200 or name.startswith("amq."):
            raise ValueError(f"exchange name {name!r} is empty, reserved, too long or not plain")
        return options


def from_url(url: str) -> RabbitMQTransport:
    return RabbitMQTransport(RabbitMQOptions.from_url(url))


def queue_name(exchange: str, group: str, topic: str) -> str:
    """``<exchange>:<group>:<topic>``, with ``+`` for ``*`` and ``#`` for ``>``. AMQP names allow
    few characters: a name with others, or too long, is cleaned and ends in ``@<digest>``."""
    plain = f"{exchange}:{group}:{topic}"
    name = f"{exchange}:{group}:{topic.replace('*', '+').replace('>', '#')}"
    if len(name) <= _MAX_NAME and _PLAIN.fullmatch(plain.replace("*", "").replace(">", "")):
        return name
    digest = hashlib.sha256(plain.encode()).hexdigest()[:16]
    return f"{_UNSAFE.sub('_', name)[: _MAX_NAME - 17]}@{digest}"


def delay_bucket(delay: float) -> int:
    """The delay queue (its TTL bound in ms) for ``delay`` seconds: the next power of 2^(1/4)."""
    ms = max(1, math.ceil(delay * 1000))
    return math.ceil(2 ** (math.ceil(math.log2(ms) * 4 - 1e-9) / 4))


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
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._publisher: aiormq.Channel | None = None
        self._start_lock = asyncio.Lock()
        self._delays: set[int] = set()
        self._subscriptions: set[RabbitMQSubscription] = set()
        self._setups: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._idle: asyncio.Event | None = None
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
                channel = connection.channel(publisher_confirms=True, on_return_raises=True)
                await channel.initialize()
                await self._declare_exchange(channel)
                channel.reopen_callbacks.add(self._declare_exchange)
            except BaseException as exc:
                await connection.close()
                if isinstance(exc, Exception):
                    raise self._mapped(exc) from exc
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
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            raise TransportError(f"RabbitMQ refused the login at {redact(options.url)}") from exc
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise ServiceUnavailable(
                f"RabbitMQ is not reachable at {redact(options.url)}: {exc}"
            ) from exc

    async def _declare_exchange(self, channel: AbstractRobustChannel | None) -> None:
        if channel is None:
            return
        underlay = await underlay_of(channel)
        await underlay.exchange_declare(self.options.exchange, exchange_type="topic", durable=True)
        self._publisher = underlay

    async def connection(self) -> AbstractRobustConnection:
        """The robust connection, connecting first if needed (for subscriptions and stores)."""
        if self._connection is None:
            await self.start()
        assert self._connection is not None
        return self._connection

    async def open_channel(self) -> aiormq.Channel:
        """A plain (not restored after a reconnect) channel for a short job; the caller closes
        it. Waits up to ``reconnect_timeout`` for a lost connection to come back."""
        connection = await self.connection()
        try:
            async with asyncio.timeout(self.options.reconnect_timeout):
                await connection.ready()
            assert connection.transport is not None
            channel = await connection.transport.connection.channel(publisher_confirms=False)
            return cast("aiormq.Channel", channel)
        except TimeoutError:
            raise self._gone() from None
        except Exception as exc:
            raise self._mapped(exc) from exc

    async def _ready_publisher(self, deadline: float) -> aiormq.Channel:
        """The publishing channel, once (re)opened; ServiceUnavailable after ``deadline``."""
        if self._connection is None:
            await self.start()
        channel = self._channel
        assert channel is not None
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    self._check_open()
                    await channel.ready()
                    underlay = await underlay_of(channel)
                    if not underlay.is_closed:
                        self._publisher = underlay
                        return underlay
                    await asyncio.sleep(0.05)  # closed again before we got to it: back off
        except TimeoutError:
            raise self._gone() from None

    def _gone(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"RabbitMQ at {redact(self.options.url)} did not come back within "
            f"{self.options.reconnect_timeout:g}s"
        )

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
        await self.send(self.options.exchange, topic, bodies, props, mandatory=False)

    async def publish_later(
        self, message: Message, topic: str, attempt: int, delay: float, queue: str
    ) -> None:
        """Put ``message`` (of ``topic``) into ``queue`` again after ``delay`` seconds, as
        attempt ``attempt``; returns once the delayed copy is stored durably. The delay queue is
        declared on first use, and again if the broker returns the copy (it was deleted)."""
        bucket = delay_bucket(delay)
        name = f"{self.options.exchange}.delay.{bucket}"
        expiration = str(max(1, round(delay * 1000)))
        props = properties_of(message, retry=(topic, attempt), expiration=expiration)
        for last in (False, True):
            if bucket not in self._delays:
                await self._declare_delay(name)
                self._delays.add(bucket)
            try:
                await self.send(name, queue, [message.data], [props], mandatory=True)
                return
            except TransportError as exc:
                self._delays.discard(bucket)
                if last or isinstance(exc, ServiceUnavailable):
                    raise

    async def _declare_delay(self, name: str) -> None:
        channel = await self._ready_publisher(self._deadline())
        arguments = {
            **QUORUM,
            "x-dead-letter-exchange": "",  # the default exchange: routing key = target queue
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
        }
        try:
            await channel.exchange_declare(name, exchange_type="fanout", durable=True)
            await channel.queue_declare(name, durable=True, arguments=arguments)
            await channel.queue_bind(name, name, routing_key="")
        except Exception as exc:
            raise self._mapped(exc) from exc

    async def send(
        self,
        exchange: str,
        routing_key: str,
        bodies: Sequence[bytes],
        props: Sequence[Basic.Properties],
        *,
        mandatory: bool,
    ) -> None:
        """Publish with confirms, sending again what a lost connection left unconfirmed."""
        self._busy += 1
        try:
            todo: Sequence[int] = range(len(bodies))
            deadline: float | None = None
            while True:
                channel = self._publisher
                if channel is None or channel.is_closed:
                    deadline = deadline or self._deadline()
                    channel = await self._ready_publisher(deadline)
                try:
                    todo = await rabbitmq_publish.send(
                        channel, exchange, routing_key, bodies, props, todo, mandatory=mandatory
                    )
                except Exception as exc:
                    raise self._mapped(exc, routing_key) from exc
                if not todo:
                    return
                deadline = deadline or self._deadline()
                if asyncio.get_running_loop().time() > deadline:
                    raise self._gone()
                self._publisher = None
        finally:
            self._busy -= 1
            if self._busy == 0 and self._idle is not None:
                self._idle.set()

    def _mapped(self, exc: BaseException, routing_key: str = "") -> Exception:
        if isinstance(exc, TransportError | ClosedError):
            return exc
        if isinstance(exc, PublishError):
            return TransportError(f"RabbitMQ returned a message for {routing_key!r}: no queue")
        if isinstance(exc, DeliveryError):
            return TransportError(f"RabbitMQ did not accept a message for {routing_key!r}")
        if rabbitmq_publish.lost(exc):
            return ServiceUnavailable(f"lost the connection to RabbitMQ: {exc}")
        return TransportError(f"RabbitMQ failed: {type(exc).__name__}: {exc}")

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.options.reconnect_timeout

    # -- consuming ----------------------------------------------------------------------------

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> RabbitMQSubscription:
        """A subscription of ``group`` to ``topic`` (or a pattern). Its queue is declared right
        away when the transport runs (or at :meth:`start`), so that messages published after
        this call reach the group. ``prefetch`` bounds the deliveries not yet settled."""
        self._check_open()
        validate_pattern(topic)
        if not 1 <= prefetch <= 65535:
            raise ValueError("prefetch must be between 1 and 65535")
        queue = queue_name(self.options.exchange, group, topic)
        subscription = RabbitMQSubscription(self, topic, group, queue, prefetch)
        self._subscriptions.add(subscription)
        if self._connection is not None:
            self._set_up(subscription)
        return subscription

    def _set_up(self, subscription: RabbitMQSubscription) -> None:
        task = asyncio.ensure_future(subscription.open())
        subscription.opening = task
        self._setups.add(task)
        task.add_done_callback(self._setups.discard)

    def forget(self, subscription: RabbitMQSubscription) -> None:
        self._subscriptions.discard(subscription)

    # -- the rest -----------------------------------------------------------------------------

    def dead_letters(self) -> RabbitMQDeadLetterStore:
        """Dead letters in the durable queue ``<exchange>.dead-letters`` of the same broker."""
        if self._dead_letters is None:
            name = f"{self.options.exchange}.dead-letters"
            self._dead_letters = RabbitMQDeadLetterStore(self, name)
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
        if self._busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
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
