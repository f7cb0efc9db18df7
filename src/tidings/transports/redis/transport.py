"""Redis Streams transport: ``redis://127.0.0.1:6379/0``.

Each topic is a stream (``<prefix>:topic:<topic>``, layout in
:mod:`tidings.transports.redis_protocol`); each tidings group is a consumer group of that stream,
created at id ``0`` so a new group reads the stream's whole history; each subscription is one
consumer of its group, named uniquely, so the subscriptions of a group compete for messages and
every group gets all of them. Redis has no stream wildcards: a pattern subscription reads every
stream whose topic matches, looking for new matching topics every ``discovery`` seconds.

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
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tidings.errors import ClosedError
from tidings.message import Message
from tidings.topics import validate_pattern, validate_topic
from tidings.transports.base import Features, GroupInfo
from tidings.transports.kit.options import query_options
from tidings.transports.kit.tls import check_client_certificate, wants_tls
from tidings.transports.redis_deadletters import RedisDeadLetterStore
from tidings.transports.redis_groups import drop_group, list_groups
from tidings.transports.redis_protocol import (
    PUBLISH_SCRIPT,
    Keys,
    command,
    connect,
    evaluate,
    mapped,
    publish_args,
    retrying,
    sha1,
)
from tidings.transports.redis_subscription import RedisSubscription
from tidings.urls import redact

__all__ = ["FEATURES", "RedisOptions", "RedisTransport", "from_url"]

logger = logging.getLogger("tidings.transports.redis")

FEATURES = Features(
    persistent=True,
    ordered_per_key=False,
    consumer_groups=True,
    native_delay=False,
    replays_history=True,
    wildcards=True,
)
"""``persistent`` holds while Redis runs, and across its restarts only with AOF or RDB on.
Not ordered per key: competing consumers of a group take messages of one key concurrently (a
group with one subscription gets each stream in order). ``nack`` delays are kept in Redis but
timed by the subscriptions that claim the message."""

_FROM_NETLOC = ("host", "port", "db", "username", "password", "tls")
"""Options taken from the URL's scheme, host, path and credentials, never from its query."""

_PUBLISH_CHUNK = 1000
"""Messages per script run: a script blocks Redis while it runs, so batches go in slices."""
_PUBLISH_SHA = sha1(PUBLISH_SCRIPT)


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Settings of the Redis transport. Everything after ``tls`` can be given as a URL query
    parameter: ``redis://127.0.0.1:6379/0?prefix=orders&maxlen=1000000&lease=60``. Raises
    ValueError for an option out of range."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    """Connect with TLS (``rediss://``), verifying the server's certificate."""
    tls_ca: str | None = None
    """A CA bundle file to verify the server with (implies ``tls``; otherwise the system's)."""
    tls_cert: str | None = None
    """A client certificate file (PEM) to present to servers that require one (implies ``tls``)."""
    tls_key: str | None = None
    """The private key of ``tls_cert`` when it is not in the same file."""
    prefix: str = "tidings"
    """Prefix of every key this transport uses, so several applications can share a database."""
    maxlen: int | None = None
    """Trim each stream to about this many entries on publish (``MAXLEN ~``); None keeps all.
    Trimming drops entries whether or not every group has read them."""
    lease: float = 30.0
    """Seconds a delivery may stay unsettled before another subscription may claim it: how
    long a crashed consumer's messages wait. Live subscriptions extend it while handlers run."""
    discovery: float = 1.0
    """Seconds between looks for new topics matching a pattern subscription."""
    reconnect: float = 10.0
    """Seconds ``publish`` and the dead-letter store retry a lost connection before raising."""
    timeout: float = 10.0
    """Seconds to connect, and for any one command, before the connection counts as lost."""
    consumer: str = field(default_factory=_default_consumer)
    """Name stem of this process's consumers (host and pid by default); each subscription adds
    a random suffix."""

    @property
    def address(self) -> str:
        """The server's URL without credentials, for messages."""
        scheme = "rediss" if wants_tls(self.tls, self.tls_ca, self.tls_cert) else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"

    @classmethod
    def from_url(cls, url: str) -> RedisOptions:
        """Parse ``redis[s]://[[user]:password@]host[:port][/db][?option=value…]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"expected redis://host:port/db, got {redact(url)!r}")
        db = parts.path.strip("/")
        values: dict[str, object] = {
            "host": parts.hostname,
            "port": parts.port or 6379,
            "db": int(db) if db else 0,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password is not None else None,
            "tls": parts.scheme == "rediss",
        }
        values.update(query_options(cls, parts.query, scheme="redis", exclude=_FROM_NETLOC))
        return cls(**values)  # type: ignore[arg-type]  # each value parsed for its field

    def __post_init__(self) -> None:
        check_client_certificate("redis", self.tls_cert, self.tls_key)
        for name in ("lease", "discovery", "reconnect", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"redis option {name} must be positive")
        if self.maxlen is not None and self.maxlen < 1:
            raise ValueError("redis option maxlen must be positive")
        if not self.prefix or not self.consumer or any(c.isspace() for c in self.consumer):
            raise ValueError("redis options prefix and consumer must be non-empty, without spaces")


def from_url(url: str) -> RedisTransport:
    """The transport for ``url`` (see :meth:`RedisOptions.from_url`), not yet started."""
    return RedisTransport(RedisOptions.from_url(url))


class RedisTransport:
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
        self._client: Redis | None = None
        self._closed = False
        self._subscriptions: set[RedisSubscription] = set()
        self._publishing = 0
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
        client = connect(self.options)
        try:
            await command(client, "PING")
        except RedisError as exc:
            await client.aclose()
            raise mapped(exc, self.options.address, "connecting") from exc
        if not self._adopt(client):  # started concurrently, or closed meanwhile
            await client.aclose()

    def _adopt(self, client: Redis) -> bool:
        if self._client is not None or self._closed:
            return False
        self._client = client
        return True

    async def __aenter__(self) -> RedisTransport:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

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
        client = self._client or await self.connected()
        keys = (self.keys.stream(topic), self.keys.topics)
        self._publishing += 1
        try:
            for start in range(0, len(messages), _PUBLISH_CHUNK):
                args = publish_args(
                    topic, self.options.maxlen, messages[start : start + _PUBLISH_CHUNK]
                )
                await retrying(
                    partial(evaluate, client, PUBLISH_SCRIPT, _PUBLISH_SHA, keys, args),
                    window=self.options.reconnect,
                    where=self.options.address,
                    doing=f"publishing to {topic!r}",
                )
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
        subscription = RedisSubscription(self, topic, group, prefetch)
        self._subscriptions.add(subscription)
        return subscription

    async def groups(self) -> list[GroupInfo]:
        """Every consumer group on every topic's stream, with its lag: see
        :class:`~tidings.transports.base.Groups` (a pattern's group is listed per topic)."""
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        return await list_groups(self)

    async def drop_group(self, topic: str, group: str) -> None:
        """Destroy ``group`` on ``topic``'s stream (a plain topic); raises NotFound."""
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        await drop_group(self, topic, group)

    def dead_letters(self) -> RedisDeadLetterStore:
        """The dead letters, kept in a stream on the same Redis."""
        if self._dead_letters is None:
            self._dead_letters = RedisDeadLetterStore(self)
        return self._dead_letters

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
