"""Kafka transport: ``kafka://127.0.0.1:9092`` (aiokafka).

A tidings topic is a Kafka topic of the same name. A message's ``key`` is the record key, so
Kafka's default partitioner (murmur2, as in the Java client) keeps one key on one partition and
therefore in order; messages without a key are spread over the partitions one ``publish`` call at a
time (:mod:`tidings.transports.kafka_publish`). The envelope travels in record
headers (:mod:`tidings.transports.kit.wire`), the payload as the record value, ``message.time``
as the record timestamp.

A group is a Kafka consumer group, and a subscription one member of it (see
:mod:`tidings.transports.kafka_subscription`): offsets are committed only up to the oldest
delivery not yet settled, so a message is committed only after its handler finished. Kafka has no
redelivery, so ``nack(delay)`` publishes the message again to its topic after the delay, with the
next attempt number, addressed to the failing group; the original is committed once that copy is
stored. Dead letters are records of the topic ``tidings.dead-letters``
(:mod:`tidings.transports.kafka_deadletters`).

aiokafka reconnects by itself; errors it gives up on are raised as TransportError, and as
ServiceUnavailable when no broker answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from tidings.errors import ClosedError, TransportError
from tidings.message import Message
from tidings.topics import validate_topic
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kafka_deadletters import KafkaDeadLetterStore
from tidings.transports.kafka_groups import drop_group, list_groups
from tidings.transports.kafka_protocol import check_topic, mapped
from tidings.transports.kafka_publish import Publisher
from tidings.transports.kafka_subscription import KafkaSubscription
from tidings.transports.kit.options import query_options
from tidings.transports.kit.tls import check_client_certificate, client_context, wants_tls
from tidings.urls import redact

__all__ = ["FEATURES", "KafkaOptions", "KafkaTransport", "from_url"]

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    native_delay=False,
    replays_history=True,
    wildcards=True,
)

_TOPIC_ALREADY_EXISTS = 36
_FROM_NETLOC = ("bootstrap", "username", "password")
"""Options taken from the URL's host and credentials, never from its query."""


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """Settings of the Kafka transport. Every field but ``bootstrap``, ``username`` and
    ``password`` (taken from the URL's host and user parts) can be given as a URL query
    parameter: ``kafka://user:secret@127.0.0.1:9092?tls=true&partitions=12``."""

    bootstrap: tuple[str, ...] = ("127.0.0.1:9092",)
    """``host:port`` of the brokers to ask for the cluster's metadata."""
    username: str | None = None
    """SASL user; with ``password`` turns on SASL authentication."""
    password: str | None = field(default=None, repr=False)
    sasl_mechanism: str = "PLAIN"
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``."""
    tls: bool = False
    """Connect with TLS, verifying the brokers with the system's CA certificates."""
    tls_ca: str | None = None
    """A CA bundle file to verify the brokers with (implies ``tls``)."""
    tls_cert: str | None = None
    """A client certificate file (PEM) to present to servers that require one (implies ``tls``)."""
    tls_key: str | None = None
    """The private key of ``tls_cert`` when it is not in the same file."""
    allow_plaintext_password: bool = False
    """Send ``username`` and ``password`` without TLS (SASL_PLAINTEXT). Refused unless set: on
    an untrusted network anyone on the path could read the password."""
    client_id: str = "tidings"
    partitions: int | None = None
    """Create each topic tidings publishes to or subscribes to with this many partitions (the
    most consumers of one group that can work at once). None leaves creation to the broker."""
    replication_factor: int = 1
    """Replicas of the topics tidings creates (with ``partitions``)."""
    batch_bytes: int = 512 * 1024
    """Largest record batch sent to one partition in one request."""
    linger_ms: int = 0
    """How long the producer waits for more records to batch; publish batches already."""
    compression: str | None = None
    """``gzip``, ``snappy``, ``lz4`` or ``zstd``; None sends records uncompressed."""
    fetch_max_wait_ms: int = 20
    """How long a broker may hold a fetch waiting for data; the floor of delivery latency."""
    session_timeout_ms: int = 10_000
    """A member that stops heartbeating for this long leaves its group (its messages move)."""
    heartbeat_interval_ms: int = 3_000
    metadata_max_age_ms: int = 5_000
    """How soon a wildcard subscription sees a topic created after it started."""
    request_timeout_ms: int = 30_000
    commit_interval: float = 0.1
    """Seconds between offset commits of one subscription while messages are acknowledged."""
    drain_timeout: float = 5.0
    """Seconds a closing subscription waits for deliveries in progress to settle, so that their
    offsets are committed; those still unsettled then are delivered again to the group."""
    dead_letter_topic: str = "tidings.dead-letters"

    def __post_init__(self) -> None:
        check_client_certificate("kafka", self.tls_cert, self.tls_key)
        if (
            self.username is not None
            and not wants_tls(self.tls, self.tls_ca, self.tls_cert)
            and not self.allow_plaintext_password
        ):
            raise ValueError(
                "kafka: a password without TLS would cross the network in the clear; add "
                "?tls=true, or ?allow_plaintext_password=true if the network is trusted"
            )

    @classmethod
    def from_url(cls, url: str) -> KafkaOptions:
        """Parse ``kafka://[user:password@]host[:port][,host[:port]…][?option=value…]``."""
        parts = urlsplit(url)
        credentials, _, hosts = parts.netloc.rpartition("@")
        if parts.scheme != "kafka" or not hosts:
            raise ValueError(f"expected kafka://host:port, got {redact(url)!r}")
        bootstrap = tuple(h if ":" in h else f"{h}:9092" for h in hosts.split(","))
        values: dict[str, Any] = {}
        if credentials:
            user, _, password = credentials.partition(":")
            values["username"] = unquote(user)
            values["password"] = unquote(password)
        values.update(query_options(cls, parts.query, scheme="kafka", exclude=_FROM_NETLOC))
        return cls(bootstrap, **values)

    @property
    def where(self) -> str:
        """The brokers, for error messages (never with credentials)."""
        return ",".join(self.bootstrap)

    def client_settings(self) -> dict[str, Any]:
        """Connection keyword arguments shared by aiokafka's producer, consumer and admin."""
        settings: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap),
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "metadata_max_age_ms": self.metadata_max_age_ms,
        }
        tls = wants_tls(self.tls, self.tls_ca, self.tls_cert)
        if tls:
            settings["ssl_context"] = client_context(self.tls_ca, self.tls_cert, self.tls_key)
        if self.username is not None:
            settings["security_protocol"] = "SASL_SSL" if tls else "SASL_PLAINTEXT"
            settings["sasl_mechanism"] = self.sasl_mechanism
            settings["sasl_plain_username"] = self.username
            settings["sasl_plain_password"] = self.password
        elif tls:
            settings["security_protocol"] = "SSL"
        return settings


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
                    raise mapped(exc, "connecting", options.where) from exc
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
            await publisher.publish(topic, messages)
        except KafkaError as exc:
            raise mapped(exc, f"publishing to {topic!r}", self.options.where) from exc
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
            try:
                response = await admin.create_topics([new])
            except KafkaError as exc:
                raise mapped(exc, f"creating topic {topic!r}", options.where) from exc
            for _, code, *_ in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    error = for_code(code)()
                    raise mapped(error, f"creating topic {topic!r}", options.where)
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
                    raise mapped(exc, "connecting", self.options.where) from exc
                self._admin = admin
            return self._admin

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> KafkaSubscription:
        """A member of consumer group ``group`` on ``topic`` (or a wildcard pattern); it joins the
        group when first iterated. Raises ValueError for a name Kafka cannot hold."""
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        subscription = KafkaSubscription(self, topic, group, prefetch)
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: KafkaSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def groups(self) -> list[GroupInfo]:
        """Every consumer group on every topic it committed offsets on, with its lag: see
        :class:`~tidings.transports.base.Groups` and :mod:`~tidings.transports.kafka_groups`."""
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        options = self.options
        admin = self._admin or await self._admin_client()
        try:
            return await list_groups(admin, options.client_settings(), options.dead_letter_topic)
        except KafkaError as exc:
            raise mapped(exc, "listing the groups", options.where) from exc

    async def drop_group(self, topic: str, group: str) -> None:
        """Delete the Kafka group ``group``, whose offsets must all be on ``topic``; raises
        NotFound, TransportError while it has members or offsets on other topics."""
        if self._closed:
            raise ClosedError("the Kafka transport was closed")
        options = self.options
        admin = self._admin or await self._admin_client()
        try:
            await drop_group(
                admin, options.client_settings(), options.dead_letter_topic, topic, group
            )
        except KafkaError as exc:
            raise mapped(exc, f"dropping the group {group!r}", options.where) from exc

    def dead_letters(self) -> KafkaDeadLetterStore:
        if self._dead_letters is None:
            self._dead_letters = KafkaDeadLetterStore(self)
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
        try:
            if producer is not None:
                await producer.stop()
            if admin is not None:
                await admin.close()
        except KafkaError as exc:
            raise TransportError(f"Kafka failed closing at {self.options.where}: {exc}") from exc
