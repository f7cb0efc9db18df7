"""The settings of the NATS transport, and the ``nats://`` URL that carries them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from tidings.transports.kit.options import query_options, redacted_repr
from tidings.transports.kit.partitions import DEFAULT_PARTITIONS, check_partitions
from tidings.transports.kit.tls import check_client_certificate, client_context, wants_tls
from tidings.urls import redact

__all__ = ["NatsOptions"]


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
    ack_wait: float = 10.0
    """Seconds before a delivery nobody settled is delivered again (consumer ``ack_wait``). A
    live subscription reports its unsettled deliveries in progress every third of it
    (:mod:`.subscription`), so it is how soon a dead worker's deliveries come again (and part
    of its partitions' :attr:`lease`), not a limit on how long a handler may take."""
    partitions: int = DEFAULT_PARTITIONS
    """Partitions per topic for keyed messages (see :mod:`tidings.transports.kit.partitions`):
    at most this many subscriptions of a group share a topic's keyed messages. Every process
    publishing to or consuming a topic must use the same number."""
    max_ack_pending: int = 10_000
    """Unsettled deliveries per group across all its subscriptions (consumer setting)."""
    duplicate_window: float = 120.0
    """Seconds during which a message id published again is stored only once."""
    pull_expires: float = 2.0
    """Seconds a pull request waits on the server before it is renewed (part of :attr:`lease`:
    shorter hands a dead worker's partitions on sooner, for an idle pull request this often)."""
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

    @property
    def partition_prefix(self) -> str:
        """Subject prefix of keyed messages: partition ``n`` of topic ``a.b`` is subject
        ``<prefix>#.<n>.a.b`` (``#`` is no topic's, so no topic pattern matches it)."""
        return f"{self.prefix}#"

    @property
    def lease(self) -> float:
        """Seconds a partition's lease lasts: ``ack_wait + pull_expires + 1`` (13 by default).
        A dead owner's pull requests may still take messages until they expire; a lease that
        long lets all it took come due for redelivery before its partitions go to another
        subscription (which JetStream then hands the redeliveries first). The 1 is the longest
        time between two renewals."""
        return self.ack_wait + self.pull_expires + 1.0

    @property
    def lease_bucket(self) -> str:
        """The key-value bucket of the partition leases."""
        return f"{self.stream}_PARTITIONS"

    def __post_init__(self) -> None:
        check_client_certificate("nats", self.tls_cert, self.tls_key)
        check_partitions("nats", self.partitions)

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
