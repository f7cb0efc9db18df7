"""The Kafka transport: its lifecycle, the producer and admin connections it shares, and the
wiring of publish, subscriptions, groups and dead letters (see the package docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from tidings.errors import ClosedError
from tidings.message import Message
from tidings.topics import validate_topic
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kafka.dead_letters import KafkaDeadLetterStore
from tidings.transports.kafka.groups import drop_group, list_groups
from tidings.transports.kafka.options import KafkaOptions, error_map
from tidings.transports.kafka.publish import Publisher
from tidings.transports.kafka.subscription import KafkaSubscription
from tidings.transports.kafka.topics import check_topic

__all__ = ["FEATURES", "KafkaTransport", "from_url"]

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    native_delay=False,
    replays_history=True,
    wildcards=True,
)

_TOPIC_ALREADY_EXISTS = 36


def from_url(url: str) -> KafkaTransport:
    return KafkaTransport(KafkaOptions.from_url(url))


class KafkaTransport:
    """The Kafka transport. Constructing it does no I/O; :meth:`start` (or the first publish)
    connects the producer, and each subscription connects its own consumer when iterated.

    Safe for concurrent use by tasks of one event loop.
    """

    features = FEATURES

    def __init__(self, options: KafkaOptions | str | None = None) -> None:
        if isinstance(options, str):
            options = KafkaOptions.from_url(options)
        self.options = options or KafkaOptions()
        self._errors = error_map(self.options)
        self._producer: Any = None
        self._admin: Any = None
        self._start_lock = asyncio.Lock()
        self._topics: set[str] = set()
        self._publisher: Publisher | None = None
        self._subscriptions: set[KafkaSubscription] = set()
        self._dead_letters: KafkaDeadLetterStore | None = None
        self._publishing = 0
        self._idle: asyncio.Future[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Connect the producer. Idempotent.

        Raises ServiceUnavailable when no broker answers, ClosedError after :meth:`aclose`.
        """
        await self.producer()

    async def producer(self) -> Any:
        """The started aiokafka producer, shared by publish, retries and dead letters."""
        async with self._start_lock:
            if self._closed:
                raise ClosedError("the Kafka transport was closed")
            if self._producer is None:
                options = self.options
                producer = AIOKafkaProducer(
                    acks="all",
                    max_batch_size=options.batch_bytes,
                    linger_ms=options.linger_ms,
                    compression_type=options.compression,
                    **options.client_settings(),
                )
                try:
                    await producer.start()
                except Exception as exc:
                    with suppress(Exception):
                        await producer.stop()
                    raise self._errors.error(exc, "connecting") from exc
                self._producer = producer
                self._publisher = Publisher(producer)
            return self._producer

    async def _started(self) -> Publisher:
        await self.producer()
        assert self._publisher is not None  # set with the producer
        return self._publisher

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` on ``topic``; returns when the brokers acknowledged all of them.

        Records join one batch per partition, shared with concurrent publishes. Messages of one
        key keep their order; so do keyless messages of one call. Raises ValueError for a topic
        name Kafka rejects, TransportError (ServiceUnavailable) when the brokers fail,
        ClosedError after :meth:`aclose`.
        """
        validate_topic(topic)
        if not messages:
            return
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        publisher = self._publisher or await self._started()
        self._publishing += 1
        try:
            if topic not in self._topics:
                await self.prepare(topic)
            with self._errors.mapping(f"publishing to {topic!r}"):
                await publisher.publish(topic, messages)
        finally:
            self._publishing -= 1
            idle = self._idle
            if self._publishing == 0 and idle is not None and not idle.done():
                idle.set_result(None)

    async def prepare(self, topic: str) -> None:
        """Check ``topic``'s name and, with ``options.partitions``, create it when missing."""
        check_topic(topic)
        options = self.options
        if options.partitions is not None:
            admin = self._admin or await self._admin_client()
            new = NewTopic(topic, options.partitions, options.replication_factor)
            doing = f"creating topic {topic!r}"
            with self._errors.mapping(doing):
                response = await admin.create_topics([new])
            for _, code, *_ in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise self._errors.error(for_code(code)(), doing)
        self._topics.add(topic)

    async def _admin_client(self) -> Any:
        async with self._start_lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(**self.options.client_settings())
                try:
                    await admin.start()
                except Exception as exc:
                    with suppress(Exception):
                        await admin.close()
                    raise self._errors.error(exc, "connecting") from exc
                self._admin = admin
            return self._admin

    async def ping(self) -> None:
        """One metadata request to a broker through the admin client (connecting it first if
        needed); raises ServiceUnavailable when no broker answers, ClosedError after
        :meth:`aclose`."""
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        admin = self._admin or await self._admin_client()
        with self._errors.mapping("pinging"):
            await admin.describe_cluster()

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> KafkaSubscription:
        """A member of consumer group ``group`` on ``topic`` (or a wildcard pattern); it joins the
        group when first iterated. Raises ValueError for a name Kafka cannot hold."""
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        subscription = KafkaSubscription(
            topic,
            group,
            prefetch,
            options=self.options,
            errors=self._errors,
            prepare=self.prepare,
            publish=self.publish,
            forget=self._subscriptions.discard,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def groups(self) -> list[GroupInfo]:
        """Every consumer group on every topic it committed offsets on, with its lag: see
        :class:`~tidings.transports.base.Groups` and :mod:`~tidings.transports.kafka.groups`."""
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        options = self.options
        admin = self._admin or await self._admin_client()
        with self._errors.mapping("listing the groups"):
            return await list_groups(admin, options.client_settings(), options.dead_letter_topic)

    async def drop_group(self, topic: str, group: str) -> None:
        """Delete the Kafka group ``group``, whose offsets must all be on ``topic``; raises
        NotFound, TransportError while it has members or offsets on other topics."""
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        options = self.options
        admin = self._admin or await self._admin_client()
        with self._errors.mapping(f"dropping the group {group!r}"):
            await drop_group(
                admin, options.client_settings(), options.dead_letter_topic, topic, group
            )

    def dead_letters(self) -> KafkaDeadLetterStore:
        if self._dead_letters is None:
            self._dead_letters = KafkaDeadLetterStore(
                self.options, self._errors, producer=self.producer, prepare=self.prepare
            )
        return self._dead_letters

    async def aclose(self) -> None:
        """Close every subscription (each drains, see ``drain_timeout``), wait for publishes in
        progress, then close the producer. Later publishes raise ClosedError. Idempotent."""
        async with self._start_lock:
            if self._closed:
                return
            self._closed = True
        subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            await subscription.aclose()
        await asyncio.gather(*(s.wait_closed() for s in subscriptions))
        if self._publishing:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle
        producer, self._producer = self._producer, None
        self._publisher = None
        admin, self._admin = self._admin, None
        with self._errors.mapping("closing"):
            if producer is not None:
                await producer.stop()
            if admin is not None:
                await admin.close()
