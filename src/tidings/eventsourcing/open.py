"""Event store URLs: the scheme picks the backend, whose module is imported only when used.

================================  ===========================================================
``memory://``                     :class:`~tidings.eventsourcing.backends.memory.MemoryEventStore`
``sqlite:///relative/path.db``    :class:`~tidings.eventsourcing.backends.sqlite.SqliteEventStore`
``sqlite:////absolute/path.db``   (``?synchronous=full`` for power-loss durability)
``postgresql://user@host/db``     :mod:`~tidings.eventsourcing.backends.postgres`
                                  (also ``postgres://``; ``?schema=name``, ``?pool_size=n``)
================================  ===========================================================
"""

from __future__ import annotations

import importlib

from tidings.eventsourcing.backend import EventStoreBackend

__all__ = ["open_backend"]

_BACKENDS = {
    "memory": ("tidings.eventsourcing.backends.memory", "MemoryEventStore"),
    "sqlite": ("tidings.eventsourcing.backends.sqlite", "SqliteEventStore"),
    "postgresql": ("tidings.eventsourcing.backends.postgres", "PostgresEventStore"),
    "postgres": ("tidings.eventsourcing.backends.postgres", "PostgresEventStore"),
}


def open_backend(url: str) -> EventStoreBackend:
    """The backend for ``url``, constructed without I/O.

    Raises ValueError for an unknown scheme, naming the scheme only (a URL may hold a password).
    """
    scheme, separator, _ = url.partition("://")
    known = ", ".join(f"{s}://" for s in _BACKENDS)
    if not separator:
        raise ValueError(f"an event store URL starts with a scheme: one of {known}")
    try:
        module, name = _BACKENDS[scheme.lower()]
    except KeyError:
        reason = f"unknown event store scheme {scheme!r}; expected one of {known}"
        raise ValueError(reason) from None
    backend: EventStoreBackend = getattr(importlib.import_module(module), name).from_url(url)
    return backend
