"""Settings of the Redis transport, from code or from a ``redis[s]://`` URL."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from tidings.transports.kit.options import query_options
from tidings.transports.kit.partitions import DEFAULT_PARTITIONS, check_partitions
from tidings.transports.kit.tls import check_client_certificate, wants_tls
from tidings.urls import redact

__all__ = ["RedisOptions"]

_FROM_NETLOC = ("host", "port", "db", "username", "password", "tls")
"""Options taken from the URL's scheme, host, path and credentials, never from its query."""


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
    """Seconds a delivery may stay unsettled before another subscription may claim it, and a
    partition's lease: how long a crashed consumer's messages wait. Live subscriptions extend
    both while they run."""
    partitions: int = DEFAULT_PARTITIONS
    """Partitions per topic for keyed messages (see :mod:`tidings.transports.kit.partitions`):
    at most this many subscriptions of a group share a topic's keyed messages. Every process
    publishing to or consuming a topic must use the same number."""
    discovery: float = 1.0
    """Seconds between looks for new topics matching a pattern subscription."""
    reconnect: float = 10.0
    """Seconds ``publish`` and the dead-letter store retry a lost connection before raising."""
    timeout: float = 10.0
    """Seconds to connect, and for any one command, before the connection counts as lost."""
    connections: int = 1000
    """Most connections open at once. Each subscription holds one; a command finding them all
    busy waits for one (up to ``timeout``) instead of failing."""
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
        check_partitions("redis", self.partitions)
        if self.connections < 1:
            raise ValueError("redis option connections must be positive")
        if self.maxlen is not None and self.maxlen < 1:
            raise ValueError("redis option maxlen must be positive")
        if not self.prefix or not self.consumer or any(c.isspace() for c in self.consumer):
            raise ValueError("redis options prefix and consumer must be non-empty, without spaces")
