"""Transports by URL scheme. Each broker's client is imported only when its scheme is used."""

from __future__ import annotations

import importlib
import re
from urllib.parse import urlsplit

from tidings.transports.base import (
    Delivery,
    Features,
    GroupInfo,
    Groups,
    Subscription,
    Transport,
)

__all__ = [
    "Delivery",
    "Features",
    "GroupInfo",
    "Groups",
    "Subscription",
    "Transport",
    "from_url",
    "redact",
]

_MODULES = {
    "memory": ("tidings.transports.memory", None),
    "sqlite": ("tidings.transports.sqlite", None),
    "postgresql": ("tidings.transports.postgres", "postgres"),
    "postgres": ("tidings.transports.postgres", "postgres"),
    "nats": ("tidings.transports.nats", "nats"),
    "kafka": ("tidings.transports.kafka", "kafka"),
    "amqp": ("tidings.transports.rabbitmq", "rabbitmq"),
    "amqps": ("tidings.transports.rabbitmq", "rabbitmq"),
    "redis": ("tidings.transports.redis", "redis"),
    "rediss": ("tidings.transports.redis", "redis"),
}


# A query parameter whose name says it holds a secret (``sslpassword``, ``keyfile_password``).
_SECRET_PARAMETER = re.compile(r"(?i)((?:^|&)[^=&]*(?:password|secret|token)[^=&]*=)[^&]*")


def redact(url: str) -> str:
    """The URL with every password replaced by ``***``, for reprs, logs and error messages.

    Covers ``user:password@`` before each host (NATS and Kafka URLs list several hosts, each
    with credentials) and query parameters whose names contain ``password``, ``secret`` or
    ``token``. The one helper for every place a URL is shown.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: show its scheme only
        return f"{url.partition(':')[0]}:***"
    hosts = []
    for host in parts.netloc.split(","):
        userinfo, at, address = host.rpartition("@")
        if at and ":" in userinfo:
            host = f"{userinfo.partition(':')[0]}:***@{address}"
        hosts.append(host)
    netloc, query = ",".join(hosts), _SECRET_PARAMETER.sub(r"\1***", parts.query)
    # replaced in place: urlunsplit would turn ``sqlite:///x.db`` into ``sqlite:/x.db``
    if netloc != parts.netloc:
        url = url.replace(parts.netloc, netloc, 1)
    if query != parts.query:
        url = url.replace(f"?{parts.query}", f"?{query}", 1)
    return url


def from_url(url: str) -> Transport:
    """The transport for ``url``'s scheme, not yet started.

    Raises ValueError for an unknown scheme and ImportError naming the extra to install when the
    broker's client is missing (``pip install 'tidings[kafka]'``).
    """
    scheme = urlsplit(url).scheme
    try:
        module_name, extra = _MODULES[scheme]
    except KeyError:
        known = ", ".join(sorted(_MODULES))
        raise ValueError(f"unknown transport scheme {scheme!r}; known: {known}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise ImportError(
            f"the {scheme}:// transport needs its client: pip install 'tidings[{extra}]'"
        ) from exc
    transport: Transport = module.from_url(url)
    return transport
