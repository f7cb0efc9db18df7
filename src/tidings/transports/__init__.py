"""Transports by URL scheme. Each broker's client is imported only when its scheme is used."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from tidings.transports.base import (
    Delivery,
    Features,
    GroupInfo,
    Groups,
    Subscription,
    Transport,
)
from tidings.urls import redact

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
