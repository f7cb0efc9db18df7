"""NATS JetStream transport: ``nats://127.0.0.1:4222``.

Layout on the server: one stream (``TIDINGS`` by default, file storage) stores every topic under
one subject prefix (topic ``user.signed_up`` is subject ``tidings.user.signed_up``); a second
stream (``TIDINGS_DLQ``) keeps the dead letters. Both are created by :meth:`NatsTransport.start`
when missing; an existing stream is used as it is, but for the subjects it lacks, which are
added to it (:mod:`.streams`).

A group's subscription to a topic or pattern is a durable pull consumer on that stream (one per
group and pattern, see :mod:`.groups`; ``*`` and ``>`` are NATS's own wildcards), so
subscriptions of a group compete for its messages, every group gets all of them, and a new
group starts at the oldest message the stream still holds. Keyed messages go to one of
``partitions`` partition subjects instead, each read by one subscription of a group at a time
(:mod:`.partitioned`): a key's messages are handled in order. The consumer redelivers a message
that was nacked (after the nack's delay) or not settled within ``ack_wait``, without limit: the
consumer loop decides when a message has had enough attempts.

Publishing is pipelined (see :mod:`.publish`) and idempotent per message id within the stream's
``duplicate_window``. nats-py reconnects by itself; subscriptions then ask for messages again,
publishes in progress send what was not confirmed again. nats-py's public API is used
throughout, but for the hot path of :mod:`.fast_path` with the nats-py versions it was tested
with.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.kv import KeyValue

from tidings.errors import ClosedError, NotFound, ServiceUnavailable, TidingsError
from tidings.message import Message
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.partitions import merge_groups, partition_of
from tidings.transports.nats import fast_path
from tidings.transports.nats.dead_letters import NatsDeadLetterStore
from tidings.transports.nats.groups import consumer_configs, consumers, durable_name, group_info
from tidings.transports.nats.options import NatsOptions
from tidings.transports.nats.partitioned import NatsLeases, PartitionedSubscription
from tidings.transports.nats.publish import Publisher
from tidings.transports.nats.streams import ensure_stream
from tidings.transports.nats.subscription import NatsSubscription
from tidings.transports.nats.wire import subject_for
from tidings.urls import redact

__all__ = ["FEATURES", "NatsTransport", "from_url"]

logger = logging.getLogger("tidings.transports.nats")
T = TypeVar("T")

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,  # a key's partition is read by one subscription of a group at a time
    consumer_groups=True,
    native_delay=True,
    replays_history=True,
    wildcards=True,
)


def from_url(url: str) -> NatsTransport:
    return NatsTransport(NatsOptions.from_url(url))


class NatsTransport:
    """The NATS JetStream transport. Constructing it does no I/O; :meth:`start` (or the first
    call that needs the server) connects and creates the streams when missing.

    Safe for concurrent use by tasks of one event loop.
    """

    features = FEATURES

    def __init__(self, options: NatsOptions | str | None = None) -> None:
        if isinstance(options, str):
            options = NatsOptions.from_url(options)
        self.options = options or NatsOptions()
        self._where = ", ".join(redact(s) for s in self.options.servers)
        self._errors = ErrorMap(
            "NATS",
            self._where,
            unreachable=(
                TimeoutError,
                OSError,
                nats.errors.ConnectionClosedError,
                nats.errors.NoServersError,
            ),
            client=(nats.errors.Error,),
            special=self._special,
        )
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._publisher: Publisher | None = None
        self._connected = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._subscriptions: weakref.WeakSet[PartitionedSubscription] = weakref.WeakSet()
        self._bucket: KeyValue | None = None
        self._consumers: set[str] = set()
        self._last_error: Exception | None = None
        self._closed = False
        self._closing = asyncio.Event()

    async def start(self) -> None:
        """Connect and create the streams when missing. Idempotent.

        Raises ServiceUnavailable when no server answers within ``connect_timeout`` or JetStream
        is not enabled there, ClosedError after :meth:`aclose`.
        """
        async with self._start_lock:
            if self._closed:
                raise ClosedError("the NATS transport was closed")
            if self._nc is not None:
                return
            nc = fast_path.client()
            try:
                await self._connect(nc)
                js = nc.jetstream(timeout=self.options.connect_timeout)
                options = self.options
                await self._ensure_stream(js, options.stream, options.prefix)
                await self._ensure_stream(
                    js, options.dead_letter_stream, options.dead_letter_prefix
                )
                publisher = Publisher(
                    nc, self._connected, options.publish_timeout, send=fast_path.send
                )
                with self._errors.mapping("subscribing to publish confirmations"):
                    await publisher.open()
            except BaseException:
                with suppress(Exception):
                    await nc.close()
                raise
            self._nc, self._js, self._publisher = nc, js, publisher

    async def ping(self) -> None:
        """One PING/PONG round trip to the server (connecting first if needed); raises
        ServiceUnavailable at once while the connection is down (nats-py would queue the PING
        until it reconnects) and when no PONG comes within ``connect_timeout``."""
        nc, _ = await self._client()
        if not nc.is_connected:
            raise ServiceUnavailable(f"NATS is not reachable at {self._where}: reconnecting")
        with self._errors.mapping("pinging"):
            await nc.rtt(timeout=max(1, round(self.options.connect_timeout)))

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` (``data`` bytes) on ``topic``; returns when JetStream confirmed all.

        Raises ValueError for a pattern, a header that NATS cannot carry or a message larger than
        the server's limit (nothing is sent then); TransportError or ServiceUnavailable.
        """
        options = self.options
        subject_for(options.prefix, topic)  # ValueError before anything is sent
        subjects: dict[str, list[Message]] = {}
        for message in messages:
            key = message.key
            prefix = options.prefix
            if key is not None:
                prefix = f"{options.partition_prefix}.{partition_of(key, options.partitions)}"
            subjects.setdefault(f"{prefix}.{topic}", []).append(message)
        calls = [self._publish_subject(s, m) for s, m in subjects.items()]
        await (calls[0] if len(calls) == 1 else asyncio.gather(*calls))  # one: in this Task

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> PartitionedSubscription:
        """Deliveries of ``topic`` (a pattern is allowed) for ``group``; see the module doc.
        At most ``prefetch`` deliveries are unsettled per consumer read (the shared one and
        each partition's)."""
        if self._closed:
            raise ClosedError("the NATS transport was closed")
        options = self.options
        subject_for(options.prefix, topic)  # raise ValueError here, not in the consumer

        def reading(partition: int | None) -> NatsSubscription:
            async def attach(again: bool) -> tuple[NATS, str]:
                return await self._attach(group, topic, partition, again=again)

            prefix = options.prefix
            if partition is not None:
                prefix = f"{options.partition_prefix}.{partition}"
            return NatsSubscription(
                topic, group, prefetch=prefetch, attach=attach, errors=self._errors,
                topic_start=len(prefix) + 1, expires=options.pull_expires,
                ack_wait=options.ack_wait,
            )  # fmt: skip

        leases = NatsLeases(
            self._leases, self._errors, scope=durable_name(group, topic), lease=options.lease
        )
        subscription = PartitionedSubscription(
            reading(None), reading, leases, count=options.partitions
        )
        self._subscriptions.add(subscription)
        return subscription

    async def groups(self) -> list[GroupInfo]:
        """Every group's durable consumer on the stream, with its lag: see
        :class:`~tidings.transports.base.Groups`."""
        stream = self.options.stream
        found = await self._request(
            f"listing the consumers of {stream}", lambda js: consumers(js, stream)
        )
        return merge_groups(group_info(consumer, self.options.prefix) for consumer in found)

    async def drop_group(self, topic: str, group: str) -> None:
        """Delete ``group``'s durable consumers of ``topic`` (or pattern); raises NotFound."""
        name = durable_name(group, topic)
        names = [name] + [f"{name}_p{n}" for n in range(self.options.partitions)]
        found = False
        for each in names:
            with suppress(NotFound):
                await self._request(
                    f"deleting the consumer {each}",
                    lambda js, each=each: js.delete_consumer(self.options.stream, each),  # type: ignore[misc]
                )
                found = True
            self._consumers.discard(each)
        if not found:
            raise NotFound(f"no group {group!r} on {topic!r}")

    def dead_letters(self) -> NatsDeadLetterStore:
        options = self.options
        return NatsDeadLetterStore(
            options.dead_letter_stream,
            options.dead_letter_prefix,
            self._publish_subject,
            self._request,
        )

    async def aclose(self) -> None:
        """End subscriptions (writing their settlements), wait for publishes in progress,
        close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        for subscription in list(self._subscriptions):
            with suppress(TidingsError):
                await subscription.shutdown()
        nc, self._nc = self._nc, None
        if self._publisher is not None:
            await self._publisher.drain()
        if nc is not None:
            with suppress(Exception):
                await nc.close()  # writes what is still buffered (acks) before closing

    async def _publish_subject(self, subject: str, messages: Sequence[Message]) -> None:
        publisher = self._publisher
        if publisher is None or self._closed:
            await self._client()
            publisher = self._publisher
            assert publisher is not None
        with self._errors.mapping(f"publishing to {subject}"):
            await publisher.publish(subject, messages)

    async def _attach(
        self, group: str, topic: str, partition: int | None, *, again: bool
    ) -> tuple[NATS, str]:
        """Make sure the consumer of ``group`` on ``topic`` (or one of its partitions) exists
        (``again``: it was deleted, create it even if this transport made it before); the
        connection and its pull subject."""
        nc, _ = await self._client()
        stream = self.options.stream
        configs = consumer_configs(group, topic, partition, self.options)
        for config in configs:
            name = config.durable_name
            assert name is not None
            if again or name not in self._consumers:
                await self._request(
                    f"creating the consumer {name}",
                    lambda js, config=config: js.add_consumer(stream, config),  # type: ignore[misc]
                )
                self._consumers.add(name)
        name = configs[0].durable_name
        return nc, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"

    async def _leases(self) -> KeyValue:
        """The bucket of the partition leases, created when missing."""
        if self._bucket is None:
            options = self.options
            self._bucket = await self._request(
                f"opening the bucket {options.lease_bucket}",
                lambda js: js.create_key_value(bucket=options.lease_bucket, ttl=options.lease),
            )
        return self._bucket

    async def _request(self, doing: str, call: Callable[[JetStreamContext], Awaitable[T]]) -> T:
        """``call(js)`` while ``doing`` something: see :meth:`_guarded`."""
        _, js = await self._client()
        return await self._guarded(doing, call(js))

    async def _guarded(self, doing: str, request: Awaitable[T]) -> T:
        """Await a JetStream API request, its errors mapped (NotFound for what the server did
        not find); ClosedError as soon as the transport closes (nats-py would otherwise wait
        for the reply until its timeout)."""
        with self._errors.mapping(doing):
            answer = asyncio.ensure_future(request)
            closing = asyncio.ensure_future(self._closing.wait())
            try:
                await asyncio.wait((answer, closing), return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
            if not answer.done():
                answer.cancel()
                raise ClosedError(f"the NATS transport was closed while {doing}")
            return answer.result()

    async def _client(self) -> tuple[NATS, JetStreamContext]:
        if self._closed:
            raise ClosedError("the NATS transport was closed")
        if self._nc is None:
            await self.start()
        nc, js = self._nc, self._js
        assert nc is not None
        assert js is not None
        return nc, js

    async def _connect(self, nc: NATS) -> None:
        options = self.options
        tls = options.tls_context()
        try:
            # nats-py retries an unreachable server forever (max_reconnect_attempts=-1, which
            # later keeps a worker alive through broker restarts); the timeout bounds the start.
            async with asyncio.timeout(options.connect_timeout):
                await nc.connect(
                    servers=list(options.servers),
                    name=options.name,
                    tls=tls,
                    connect_timeout=max(1, round(options.connect_timeout)),
                    reconnect_time_wait=options.reconnect_wait,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            reason = self._last_error or exc
            raise ServiceUnavailable(f"NATS is not reachable at {self._where}: {reason!r}") from exc
        self._connected.set()

    async def _ensure_stream(self, js: JetStreamContext, name: str, prefix: str) -> None:
        config = StreamConfig(
            name=name,
            subjects=[f"{prefix}.>", f"{prefix}#.>"],
            storage=StorageType(self.options.storage),
            duplicate_window=self.options.duplicate_window,
        )
        await self._guarded(f"creating the stream {name}", ensure_stream(js, config))

    def _special(self, exc: BaseException, doing: str) -> TidingsError | None:
        """What nats-py's errors mean beyond reachable or not (see ``self._errors``)."""
        if self._closed:
            return ClosedError(f"the NATS transport was closed while {doing}")
        if isinstance(exc, nats.js.errors.NotFoundError):
            return NotFound(f"NATS found nothing while {doing}: {exc}")
        if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.ServiceUnavailableError):
            return ServiceUnavailable(
                f"JetStream is not available at {self._where} while {doing}; is it enabled (-js)?"
            )
        if isinstance(exc, TimeoutError) and not str(exc):
            return ServiceUnavailable(f"NATS at {self._where} did not answer while {doing}")
        return None

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        if self._nc is not None:  # before that, start() raises with the error
            logger.warning("NATS connection error (%s): %r", self._where, exc)

    async def _on_disconnected(self) -> None:
        self._connected.clear()

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS at %s", self._where)
        self._connected.set()
        for subscription in list(self._subscriptions):
            subscription.reset()
