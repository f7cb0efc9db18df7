"""AsyncAPI Server Objects from a bus's URL: host, path and protocol, never credentials."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["servers"]

_PROTOCOLS = {
    "nats": ("nats", "NATS JetStream"),
    "kafka": ("kafka", "Kafka"),
    "amqp": ("amqp", "RabbitMQ"),
    "amqps": ("amqps", "RabbitMQ over TLS"),
    "redis": ("redis", "Redis Streams"),
    "rediss": ("redis", "Redis Streams over TLS"),
    "postgresql": ("postgresql", "PostgreSQL"),
    "postgres": ("postgresql", "PostgreSQL"),
}
"""URL scheme: the AsyncAPI protocol name and what the server is, for its description."""


def servers(url: str | None) -> dict[str, Any]:
    """The servers of the bus built from ``url``: one per host (NATS and Kafka URLs may list
    several), named after the protocol (``kafka``, ``kafka-2``, …); the embedded SQLite file is
    one ``localhost`` server whose pathname is the file; none for the in-process transport.

    User names, passwords and the query string (where secrets may be) are left out.
    """
    if url is None:
        return {}
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return {}
    if parts.scheme == "sqlite":
        server = {"host": "localhost", "pathname": parts.path[1:], "protocol": "sqlite"}
        return {"sqlite": {**server, "description": "The embedded SQLite file, on this machine."}}
    protocol, what = _PROTOCOLS.get(parts.scheme, (parts.scheme, parts.scheme))
    hosts = [host.rpartition("@")[2] for host in parts.netloc.split(",")]
    found: dict[str, Any] = {}
    for number, host in enumerate(hosts, start=1):
        server = {"host": host, "protocol": protocol, "description": what}
        if parts.path:
            server["pathname"] = parts.path
        found[protocol if number == 1 else f"{protocol}-{number}"] = server
    return found
