"""The PostgreSQL transport's settings, from a ``postgresql://`` URL."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from urllib.parse import parse_qsl, urlencode, urlsplit

from tidings.transports.kit.options import query_options, redacted_repr
from tidings.urls import redact

__all__ = ["PostgresOptions"]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """Settings of the PostgreSQL transport. Every field but ``dsn`` can be given as a URL
    query parameter (``?schema=app&lease=10``); other parameters (``sslmode``…) go to asyncpg."""

    dsn: str
    """The connection URL, without the parameters below."""
    schema: str = "tidings"
    """Schema holding the tables (created if missing): lower-case letters, digits, ``_``."""
    lease: float = 30.0
    """Seconds a delivery stays leased to a subscription that stopped renewing it (crashed)."""
    poll: float = 1.0
    """Seconds between looks when no notification came (a safety net for missed ones)."""
    pool_size: int = 10
    """Most connections in the pool (plus one for LISTEN)."""
    reconnect_timeout: float = 30.0
    """Seconds a publish keeps trying while the server is unreachable."""

    def __repr__(self) -> str:
        return redacted_repr(self)

    @classmethod
    def from_url(cls, url: str) -> PostgresOptions:
        """Parse a ``postgresql://`` (or ``postgres://``) URL; raises ValueError."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"expected a postgresql:// URL, got {redact(url)!r}")
        ours = {f.name for f in fields(cls)} - {"dsn"}
        pairs = parse_qsl(parts.query)
        mine = urlencode([(name, value) for name, value in pairs if name in ours])
        rest = [(name, value) for name, value in pairs if name not in ours]
        values = query_options(cls, mine, scheme="postgresql", exclude=("dsn",))
        dsn = parts._replace(scheme="postgresql", query=urlencode(rest)).geturl()
        options = cls(dsn, **values)  # type: ignore[arg-type]
        if not _SCHEMA_NAME.fullmatch(options.schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, not {options.schema!r}")
        if min(options.lease, options.poll, options.reconnect_timeout, options.pool_size) <= 0:
            raise ValueError("lease, poll, pool_size and reconnect_timeout must be positive")
        return options
