"""NATS JetStream transport: ``nats://127.0.0.1:4222``.

Layout on the server: one stream (``TIDINGS`` by default, file storage) stores every topic under
one subject prefix (topic ``user.signed_up`` is subject ``tidings.user.signed_up``); a second
stream (``TIDINGS_DLQ``) keeps the dead letters. Both are created by :meth:`NatsTransport.start`
when missing; an existing stream is used as it is.

A group's subscription to a topic or pattern is a durable pull consumer on that stream (one per
group and pattern, its ``filter_subject`` the pattern: ``*`` and ``>`` are NATS's own wildcards),
so subscriptions of a group compete for its messages, every group gets all of them, and a new
group starts at the oldest message the stream still holds. The consumer redelivers a message
that was nacked (after the nack's delay) or not settled within ``ack_wait``, without limit: the
consumer loop decides when a message has had enough attempts.

Publishing is pipelined (see :mod:`tidings.transports.nats_publish`) and idempotent per message
id within the stream's ``duplicate_window``. nats-py reconnects by itself; subscriptions then ask
for messages again, publishes in progress send what was not confirmed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RawStreamMsg,
    StorageType,
    StreamConfig,
)

from tidings.errors import ClosedError, NotFound, ServiceUnavailable, TidingsError, TransportError
from tidings.message import Message
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kit.options import query_options, redacted_repr
from tidings.transports.kit.tls import check_client_certificate, client_context, wants_tls
from tidings.transports.nats_deadletters import NatsDeadLetterStore
from tidings.transports.nats_groups import consumers, group_info
from tidings.transports.nats_protocol import Connection, subject_for
from tidings.transports.nats_publish import Publisher
from tidings.transports.nats_subscription import NatsSubscription
from tidings.urls import redact

__all__ = ["FEATURES", "NatsOptions", "NatsTransport", "durable_name", "from_url"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

FEATURES = Features(
    persistent=True,
    ordered_per_key=False,  # competing subscriptions of a group split messages without key affinity
    consumer_groups=True,
    native_delay=True,
    replays_history=True,
    wildcards=True,
)

_SUBJECTS_OVERLAP = 10065
_STREAM_NAME_IN_USE = 10058
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """Settings of the NATS transport. Every field but ``servers`` can be given as a URL query
    parameter: ``nats://127.0.0.1:4222?stream=ORDERS&prefix=orders&ack_wait=60``."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    """Server URLs, credentials included (``nats://user:password@host:4222``)."""
    stream: str = "TIDINGS"
    """The stream that stores every topic; the dead letters go to ``<stream>_DLQ``."""
    prefix: str = "tidings"
    """Subject prefix of the topics: topic ``a.b`` is subject ``<prefix>.a.b``."""
    storage: Literal["file", "memory"] = "file"
    """Storage of streams this transport creates; ``file`` survives a server restart."""
    ack_wait: float = 30.0
    """Seconds before a delivery nobody settled is delivered again (consumer ``ack_wait``)."""
    max_ack_pending: int = 10_000
    """Unsettled deliveries per group across all its subscriptions (consumer setting)."""
    duplicate_window: float = 120.0
    """Seconds during which a message id published again is stored only once."""
    pull_expires: float = 5.0
    """Seconds a pull request waits on the server before it is renewed."""
    publish_timeout: float = 30.0
    """Seconds ``publish`` waits for every confirmation (across reconnects) before failing."""
    connect_timeout: float = 5.0
    """Seconds ``start`` tries to reach a server before raising ServiceUnavailable."""
    reconnect_wait: float = 0.5
    """Seconds between reconnect attempts to one server; reconnecting never gives up."""
    tls: bool = False
    """Connect with TLS, verifying the server with the system's CA certificates."""
    tls_ca: str | None = None
    """A CA bundle file to verify the server with (implies ``tls``)."""
    tls_cert: str | None = None
    """A client certificate file (PEM) to present to servers that require one (implies ``tls``)."""
    tls_key: str | None = None
    """The private key of ``tls_cert`` when it is not in the same file."""
    name: str | None = None
    """Connection name shown by the server's monitoring."""

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.stream}_DLQ"

    @property
    def dead_letter_prefix(self) -> str:
        return f"{self.prefix}_dlq"

    def __post_init__(self) -> None:
        check_client_certificate("nats", self.tls_cert, self.tls_key)

    def __repr__(self) -> str:
        return redacted_repr(self)

    def tls_context(self) -> ssl.SSLContext | None:
        """The context nats-py connects with, None without TLS; ValueError for unreadable files."""
        if not wants_tls(self.tls, self.tls_ca, self.tls_cert):
            return None
        return client_context(self.tls_ca, self.tls_cert, self.tls_key)

    @classmethod
    def from_url(cls, url: str) -> NatsOptions:
        """Parse ``nats://[user:password@]host[:port][,host[:port]…][?option=value…]``."""
        parts = urlsplit(url)
        if parts.scheme != "nats" or not parts.hostname:
            raise ValueError(f"expected nats://host:port, got {redact(url)!r}")
        credentials, _, hosts = parts.netloc.rpartition("@")
        userinfo = f"{credentials}@" if credentials else ""
        servers = tuple(f"nats://{userinfo}{host}" for host in hosts.split(","))
        values = query_options(cls, parts.query, scheme="nats", exclude=("servers",))
        return cls(servers, **values)  # type: ignore[arg-type]  # each value parsed by its type


def from_url(url: str) -> NatsTransport:
    return NatsTransport(NatsOptions.from_url(url))


def durable_name(group: str, topic: str) -> str:
    """The consumer name of ``group`` on ``topic``: readable, and unique per pair."""
    digest = hashlib.blake2b(f"{group}\0{topic}".encode(), digest_size=4).hexdigest()
    readable = _NAME_UNSAFE.sub("_", f"{group}__{topic}".replace(">", "gt").replace("*", "star"))
    return f"{readable[:200]}_{digest}"


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
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._publisher: Publisher | None = None
        self._connected = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._subscriptions: set[NatsSubscription] = set()
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
            nc = Connection()
            try:
                await self._connect(nc)
                js = nc.jetstream(timeout=self.options.connect_timeout)
                await self._ensure_stream(js, self.options.stream, self.options.prefix)
                await self._ensure_stream(
                    js, self.options.dead_letter_stream, self.options.dead_letter_prefix
                )
                publisher = Publisher(nc, self._connected, self.options.publish_timeout)
                with self._errors("subscribing to publish confirmations"):
                    await publisher.open()
            except BaseException:
                with suppress(Exception):
                    await nc.close()
                raise
            self._nc, self._js, self._publisher = nc, js, publisher

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` (``data`` bytes) on ``topic``; returns when JetStream confirmed all.

        Raises ValueError for a pattern, a header that NATS cannot carry or a message larger than
        the server's limit (nothing is sent then); TransportError or ServiceUnavailable.
        """
        subject = subject_for(self.options.prefix, topic)
        await self.publish_subject(subject, messages)

    async def publish_subject(self, subject: str, messages: Sequence[Message]) -> None:
        publisher = self._publisher
        if publisher is None or self._closed:
            await self._client()
            publisher = self._publisher
            assert publisher is not None
        with self._errors(f"publishing to {subject}"):
            await publisher.publish(subject, messages)

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> NatsSubscription:
        """Deliveries of ``topic`` (a pattern is allowed) for ``group``; see the module doc."""
        if self._closed:
            raise ClosedError("the NATS transport was closed")
        subject_for(self.options.prefix, topic)  # raise ValueError here, not in the consumer
        subscription = NatsSubscription(self, topic, group, prefetch)
        self._subscriptions.add(subscription)
        return subscription

    async def groups(self) -> list[GroupInfo]:
        """Every group's durable consumer on the stream, with its lag: see
        :class:`~tidings.transports.base.Groups`."""
        _, js = await self._client()
        with self._errors(f"listing the consumers of {self.options.stream}"):
            found = await self._api(consumers(js, self.options.stream))
        groups = [group_info(consumer, self.options.prefix) for consumer in found]
        return sorted(groups, key=lambda info: (info.topic, info.group))

    async def drop_group(self, topic: str, group: str) -> None:
        """Delete ``group``'s durable consumer of ``topic`` (or pattern); raises NotFound."""
        _, js = await self._client()
        name = durable_name(group, topic)
        with self._errors(f"deleting the consumer {name}"):
            try:
                await self._api(js.delete_consumer(self.options.stream, name))
            except nats.js.errors.NotFoundError:
                raise NotFound(f"no group {group!r} on {topic!r}") from None
        self._consumers.discard(name)

    def dead_letters(self) -> NatsDeadLetterStore:
        return NatsDeadLetterStore(self)

    async def aclose(self) -> None:
        """End subscriptions, wait for publishes in progress, close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        for subscription in list(self._subscriptions):
            with suppress(TidingsError):
                await subscription.aclose()
        nc, self._nc = self._nc, None
        if self._publisher is not None:
            await self._publisher.drain()
        if nc is not None:
            with suppress(Exception):
                await nc.close()  # writes what is still buffered (acks) before closing

    async def attach(
        self, subscription: NatsSubscription, *, again: bool = False
    ) -> tuple[NATS, str]:
        """Make sure ``subscription``'s consumer exists (``again``: it was deleted, create it
        even if this transport made it before); the connection and its pull subject."""
        nc, js = await self._client()
        name = durable_name(subscription.group, subscription.topic)
        if again or name not in self._consumers:
            config = ConsumerConfig(
                durable_name=name,
                description=subscription.group,  # for groups(): the name is not reversible
                filter_subject=subject_for(self.options.prefix, subscription.topic),
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.options.ack_wait,
                max_ack_pending=self.options.max_ack_pending,
                max_deliver=-1,
            )
            with self._errors(f"creating the consumer {name}"):
                await self._api(js.add_consumer(self.options.stream, config))
            self._consumers.add(name)
        return nc, f"$JS.API.CONSUMER.MSG.NEXT.{self.options.stream}.{name}"

    def detach(self, subscription: NatsSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def next_stored(
        self, stream: str, subject: str, sequence: int
    ) -> tuple[int, str, bytes] | None:
        """The first message of ``stream`` at or after ``sequence`` matching ``subject``, as
        (sequence, its subject, data); None when there is none."""
        _, js = await self._client()
        with self._errors(f"reading {stream}"):
            request = js.get_msg(stream, seq=sequence, subject=subject, next=True)
            return await self._stored(request)

    async def last_stored(self, stream: str, subject: str) -> tuple[int, str, bytes] | None:
        """The last message of ``stream`` on ``subject`` as (sequence, subject, data), or None."""
        _, js = await self._client()
        with self._errors(f"reading {stream}"):
            return await self._stored(js.get_msg(stream, subject=subject))

    async def _stored(self, request: Awaitable[RawStreamMsg]) -> tuple[int, str, bytes] | None:
        try:
            raw = await self._api(request)
        except nats.js.errors.NotFoundError:
            return None
        assert raw.seq is not None
        return raw.seq, raw.subject or "", raw.data or b""

    async def delete_stored(self, stream: str, sequence: int) -> int:
        """Delete one message of ``stream``; 1 if it existed, else 0."""
        _, js = await self._client()
        with self._errors(f"deleting from {stream}"):
            try:
                return int(await self._api(js.delete_msg(stream, sequence)))
            except nats.js.errors.NotFoundError:
                return 0

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
            subjects=[f"{prefix}.>"],
            storage=StorageType(self.options.storage),
            duplicate_window=self.options.duplicate_window,
        )
        with self._errors(f"creating the stream {name}"):
            try:
                await self._api(js.add_stream(config))
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code == _STREAM_NAME_IN_USE:
                    return  # an existing stream of that name is used as it is
                if exc.err_code == _SUBJECTS_OVERLAP and await self._stream_exists(js, name):
                    return  # another transport created this very stream a moment ago
                raise

    async def _stream_exists(self, js: JetStreamContext, name: str) -> bool:
        try:
            await self._api(js.stream_info(name))
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def _api(self, request: Awaitable[T]) -> T:
        """Await a JetStream API request, or raise ClosedError as soon as the transport closes
        (nats-py would otherwise wait for the reply until its timeout)."""
        answer = asyncio.ensure_future(request)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((answer, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if not answer.done():
            answer.cancel()
            raise ClosedError("the NATS transport was closed")
        return answer.result()

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Map nats-py's exceptions to tidings' at the boundary."""
        try:
            yield
        except TidingsError:
            raise
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise self._mapped(exc, doing) from exc

    def _mapped(self, exc: Exception, doing: str) -> TidingsError:
        if self._closed:
            return ClosedError(f"the NATS transport was closed while {doing}")
        if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.ServiceUnavailableError):
            return ServiceUnavailable(
                f"JetStream is not available at {self._where} while {doing}; is it enabled (-js)?"
            )
        unreachable = (
            TimeoutError,
            OSError,
            nats.errors.ConnectionClosedError,
            nats.errors.NoServersError,
        )
        if isinstance(exc, unreachable):
            return ServiceUnavailable(
                f"NATS at {self._where} did not answer while {doing}: {exc!r}"
            )
        return TransportError(f"NATS failed while {doing}: {exc}")

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        if self._nc is not None:  # before that, start() raises with the error
            logger.warning("NATS connection error (%s): %r", self._where, exc)

    async def _on_disconnected(self) -> None:
        self._connected.clear()

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS at %s", self._where)
        self._connected.set()
        for subscription in self._subscriptions:
            subscription.reset()
