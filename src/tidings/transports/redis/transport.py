"""Redis Streams transport: ``redis://127.0.0.1:6379/0``.

Each topic is a stream (``<prefix>:topic:<topic>``, layout in
:mod:`tidings.transports.redis.wire`); each tidings group is a consumer group of that stream,
created at id ``0`` so a new group reads the stream's whole history; each subscription is one
consumer of its group, named uniquely, so the subscriptions of a group compete for messages and
every group gets all of them. Redis has no stream wildcards: a pattern subscription reads every
stream whose topic matches, looking for new matching topics every ``discovery`` seconds. A keyed
message goes to its key's partition stream instead, which one subscription of a group reads at a
time (see :mod:`.partitioned`): a group's messages of one key are handled in order.

Delivery is at least once. A delivery not settled within ``lease`` seconds (its consumer died) is
claimed by another subscription of the group (XAUTOCLAIM); live subscriptions extend the lease of
what they hold. ``nack(delay)`` leaves the message pending and marks it claimable after the
delay, so the wait survives the process; ``attempt`` is Redis's delivery count. Messages are
durable exactly as far as the server is: a Redis without AOF or RDB snapshots (like a default
test server) loses every stream, group and dead letter when it restarts.

Publishing adds a whole batch in one command; acks are sent in bulk in the background. After a
lost connection subscriptions retry forever (with backoff), re-creating their groups when Redis
lost them; ``publish`` and the dead-letter store retry for ``reconnect`` seconds, then raise
ServiceUnavailable. Redis Cluster is not supported (a batch spans several keys).

The modules, each below this one: :mod:`.options` (settings, URL), :mod:`.wire` (keys, entries,
commands, scripts), :mod:`.publish`, :mod:`.subscription` (with :mod:`.settlement`: acks, nacks
and leases), :mod:`.groups`, :mod:`.dead_letters`. They get the client through ``connected`` and
client errors mapped by the transport's one :class:`~tidings.transports.kit.errors.ErrorMap`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tidings.errors import ClosedError
from tidings.message import Message
from tidings.resource import Resource
from tidings.topics import validate_pattern, validate_topic
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.tls import wants_tls
from tidings.transports.redis.dead_letters import RedisDeadLetterStore
from tidings.transports.redis.groups import drop_group, list_groups
from tidings.transports.redis.options import RedisOptions
from tidings.transports.redis.pool import WaitingPool
from tidings.transports.redis.publish import append
from tidings.transports.redis.subscription import MAX_BLOCK, RedisSubscription
from tidings.transports.redis.wire import Keys, PackedConnection, PackedSSLConnection, command

__all__ = ["FEATURES", "LOST", "RedisTransport", "connect", "from_url"]

logger = logging.getLogger("tidings.transports.redis")

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    native_delay=False,
    replays_history=True,
    wildcards=True,
)
"""``persistent`` holds while Redis runs, and across its restarts only with AOF or RDB on.
Ordered per key: a key's messages go to one partition stream, read by one subscription of a
group at a time (entries other producers add to a topic's stream have no partition). ``nack``
delays are kept in Redis but timed by the subscriptions that claim the message."""

LOST = (RedisConnectionError, RedisTimeoutError, OSError)
"""Client errors that mean the connection is gone: worth a retry once Redis is back."""

T = TypeVar("T")


def connect(options: RedisOptions, on_connect: Callable[[], None] | None = None) -> Redis:
    """A client for ``options`` (no I/O yet). Its replies are left unparsed (lists of bytes);
    redis-py's own retries are off: the transport retries with one policy of its own.
    ``on_connect()`` is called after each connection it makes (a reconnect included)."""
    settings: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "db": options.db,
        "username": options.username,
        "password": options.password,
        "socket_connect_timeout": options.timeout,
        "socket_timeout": options.timeout + MAX_BLOCK,
        "socket_keepalive": True,
        "protocol": 2,  # the reply shapes parsed here; also what redis-py < 8 speaks
        "retry": Retry(NoBackoff(), 0),
        "connection_class": PackedConnection,
        "client_name": f"tidings:{options.consumer}",
    }
    if wants_tls(options.tls, options.tls_ca, options.tls_cert):
        # redis-py builds its SSLContext itself, from these files
        settings["connection_class"] = PackedSSLConnection
        settings["ssl_ca_certs"] = options.tls_ca
        settings["ssl_certfile"] = options.tls_cert
        settings["ssl_keyfile"] = options.tls_key
    if on_connect is not None:

        async def connected(connection: Any) -> None:
            await connection.on_connect()
            on_connect()

        settings["redis_connect_func"] = connected
    pool = WaitingPool(max_connections=options.connections, timeout=options.timeout, **settings)
    client = Redis.from_pool(pool)
    client.response_callbacks.clear()  # every reply raw: the modules parse what they use
    return client


def from_url(url: str) -> RedisTransport:
    """The transport for ``url`` (see :meth:`RedisOptions.from_url`), not yet started."""
    return RedisTransport(RedisOptions.from_url(url))


class RedisTransport(Resource):
    """Messages on Redis Streams; see the module docstring for the layout and guarantees.

    Safe to use from many tasks of one event loop. ``publish`` returns once Redis stored every
    message (a retried batch may be stored twice: handlers deduplicate by message id).
    """

    features = FEATURES

    def __init__(self, options: RedisOptions | str | None = None) -> None:
        if isinstance(options, str):
            options = RedisOptions.from_url(options)
        self.options = options or RedisOptions()
        self.keys = Keys(self.options.prefix)
        self._errors = ErrorMap("Redis", self.options.address, LOST, (RedisError,))
        self._client: Redis | None = None
        self._closed = False
        self._subscriptions: set[RedisSubscription] = set()
        self._publishing = 0
        self._registered: set[str] = set()
        """Topics this transport put in the topic set since it last made a connection."""
        self._published: asyncio.Event | None = None
        self._dead_letters: RedisDeadLetterStore | None = None
        self._shut = asyncio.Event()

    async def connected(self) -> Redis:
        """The redis.asyncio client (its replies unparsed), starting the transport if needed.

        Still there while ``aclose`` winds the subscriptions down; ClosedError after that.
        """
        if self._client is None:
            await self.start()
        if self._client is None:  # closed while starting
            raise ClosedError("the Redis transport is closed")
        return self._client

    async def start(self) -> None:
        """Connect and check that Redis answers; raises ServiceUnavailable when it does not."""
        if self._client is not None:
            return
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        # a new connection may be to a Redis that restarted empty: register topics again
        client = connect(self.options, on_connect=self._registered.clear)
        try:
            with self._errors.mapping("connecting"):
                await command(client, "PING")
        except BaseException:
            await client.aclose()
            raise
        if not self._adopt(client):  # started concurrently, or closed meanwhile
            await client.aclose()

    def _adopt(self, client: Redis) -> bool:
        if self._client is not None or self._closed:
            return False
        self._client = client
        return True

    async def ping(self) -> None:
        """One PING to Redis (connecting first if needed); raises ServiceUnavailable when it
        does not answer, ClosedError after ``aclose``. Never retried: a readiness probe wants
        the answer now."""
        client = await self.connected()
        with self._errors.mapping("pinging"):
            await command(client, "PING")

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Append ``messages`` to ``topic``'s stream in order; returns once Redis has them.

        Raises ClosedError after ``aclose``, ValueError for a pattern, TypeError for data that
        is not bytes, ServiceUnavailable when Redis stays unreachable for ``reconnect`` seconds.
        """
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        validate_topic(topic)
        if not messages:
            return
        self._publishing += 1
        try:
            options = self.options
            await append(
                self._retrying, self.keys, options.maxlen, options.partitions, topic, messages,
                self._registered,
            )  # fmt: skip
        finally:
            self._publishing -= 1
            if not self._publishing and self._published is not None:
                self._published.set()

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> RedisSubscription:
        """Batches of messages of ``topic`` (or every topic matching the pattern) for ``group``.

        Nothing happens on Redis until the subscription is iterated: then the group is created
        where missing. At most ``prefetch`` deliveries are unsettled at once (with a pattern
        over many topics, up to one more per topic).
        """
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        validate_pattern(topic)
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        subscription = RedisSubscription(
            topic,
            group,
            prefetch,
            connected=self.connected,
            options=self.options,
            keys=self.keys,
            errors=self._errors,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def groups(self) -> list[GroupInfo]:
        """Every consumer group on every topic's stream, with its lag: see
        :class:`~tidings.transports.base.Groups` (a pattern's group is listed per topic)."""
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        return await list_groups(await self.connected(), self.keys, self._errors)

    async def drop_group(self, topic: str, group: str) -> None:
        """Destroy ``group`` on ``topic``'s stream (a plain topic); raises NotFound."""
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        await drop_group(await self.connected(), self.keys, self._errors, topic, group)

    def dead_letters(self) -> RedisDeadLetterStore:
        """The dead letters, kept in a stream on the same Redis."""
        if self._dead_letters is None:
            self._dead_letters = RedisDeadLetterStore(self._retrying, self.keys)
        return self._dead_letters

    async def _retrying(self, operation: Callable[[Redis], Awaitable[T]], doing: str) -> T:
        """``operation(client)``, tried again while the connection is lost, for up to
        ``reconnect`` seconds (Redis restarting); then ServiceUnavailable. Other client errors
        become TransportError (see :class:`~tidings.transports.redis.wire.Retrying`)."""
        deadline = time.monotonic() + self.options.reconnect
        pause = 0.0
        while True:
            try:
                return await operation(self._client or await self.connected())
            except LOST as exc:
                if time.monotonic() + pause > deadline:
                    raise self._errors.error(exc, doing) from exc
                logger.debug("Redis connection lost while %s; trying again: %s", doing, exc)
            except RedisError as exc:
                raise self._errors.error(exc, doing) from exc
            await asyncio.sleep(pause)  # back off while Redis comes back
            pause = min(max(pause * 2, 0.05), 1.0)

    async def aclose(self) -> None:
        """Finish publishes in progress, end the subscriptions (their unsettled deliveries are
        released to the group at once), send the outstanding acks and disconnect. Idempotent: a
        second call returns when the first is done."""
        if self._closed:
            await self._shut.wait()
            return
        self._closed = True
        try:
            if self._publishing:
                self._published = asyncio.Event()
                await self._published.wait()
            subscriptions, self._subscriptions = self._subscriptions, set()
            await asyncio.gather(*(s.finish() for s in subscriptions))
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()
            self._shut.set()
