"""The envelope a bus puts around an event: its registered name, its key and headers, and the
correlation and causation ids of the message being handled when it is published from a handler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings import context
from tidings.codec import Registry
from tidings.message import CAUSATION_ID, CORRELATION_ID, NO_HEADERS, Message

__all__ = ["Envelopes"]


class Envelopes:
    """Makes messages for one registry; remembers each event class's name."""

    __slots__ = ("_names", "_registry")

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._names: dict[type, str] = {}

    def make(
        self, event: Any, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Message:
        """The message for ``event``; a Message passes through unchanged."""
        kind = type(event)
        if kind is Message:
            return event  # type: ignore[no-any-return]
        parent = context.thread.inline.message
        if parent is None and (handled := context.in_task.get()) is not None:
            parent = handled.message
        if parent is not None:
            linked = dict(headers) if headers else {}
            linked.setdefault(CORRELATION_ID, parent.headers.get(CORRELATION_ID) or parent.id)
            linked[CAUSATION_ID] = parent.id
            headers = linked
        name = self._names.get(kind)
        if name is None:
            name = self._names[kind] = self._registry.name_of(kind)
        return Message(name, event, headers or NO_HEADERS, key)
