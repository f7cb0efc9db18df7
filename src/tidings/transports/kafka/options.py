"""The Kafka transport's settings: :class:`KafkaOptions`, read from a ``kafka://`` URL, and how
aiokafka's errors read with them (:func:`error_map`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)

from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.options import query_options
from tidings.transports.kit.tls import check_client_certificate, client_context, wants_tls
from tidings.urls import redact

__all__ = ["KafkaOptions", "error_map"]

_FROM_NETLOC = ("bootstrap", "username", "password")
"""Options taken from the URL's host and credentials, never from its query."""
_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)
"""aiokafka's errors that mean no broker answered (aiokafka gave up reconnecting)."""


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
        """Connection keyword arguments shared by aiokafka's producer, consumer and clients."""
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


def error_map(options: KafkaOptions) -> ErrorMap:
    """How aiokafka's errors read as tidings errors for a transport with ``options``:
    :class:`~tidings.errors.ServiceUnavailable` when no broker answered, otherwise
    :class:`~tidings.errors.TransportError`, naming the brokers (never the credentials)."""
    return ErrorMap("Kafka", options.where, unreachable=_UNREACHABLE, client=(KafkaError,))
