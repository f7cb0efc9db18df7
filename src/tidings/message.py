"""The message envelope and its time-ordered ids."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import msgspec
from msgspec.structs import force_setattr

from tidings.errors import DecodeError

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "IN_REPLY_TO",
    "NO_HEADERS",
    "REPLY_TO",
    "Headers",
    "Malformed",
    "Message",
    "new_id",
]

CORRELATION_ID = "correlation-id"
"""Header: the id of the message that started the chain of events."""
CAUSATION_ID = "causation-id"
"""Header: the id of the message whose handler published this one."""
REPLY_TO = "reply-to"
"""Header of a request (``bus.request``): the topic its reply goes to."""
IN_REPLY_TO = "in-reply-to"
"""Header of a reply: the id of the request it answers."""

Headers = Mapping[str, str]
NO_HEADERS: Headers = MappingProxyType({})
"""The headers of a message that has none (shared: messages never change their headers)."""

_random = random.Random(random.SystemRandom().getrandbits(64))
_getrandbits = _random.getrandbits
_last_ms = 0
_sequence = 0
_prefix = ""


def new_id(unix_ms: int | None = None) -> str:
    """A UUIDv7 string: ids sort by creation time, and by creation order within one process.

    The 12 bits after the timestamp count up within one millisecond (RFC 9562, method 1), so two ids
    made in the same millisecond by this process still sort in the order they were made. The
    timestamp's part of the string is formatted once per millisecond.
    """
    global _last_ms, _sequence, _prefix
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    if ms > _last_ms:
        _last_ms = ms
        _sequence = _getrandbits(10)
        _prefix = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7"
    else:
        _sequence += 1
        if _sequence > 0xFFF:  # counter exhausted: borrow the next millisecond
            _last_ms += 1
            _sequence = 0
            _prefix = f"{_last_ms >> 16:08x}-{_last_ms & 0xFFFF:04x}-7"
    tail = _getrandbits(62)
    return f"{_prefix}{_sequence:03x}-{0x8000 | tail >> 48:04x}-{tail & 0xFFFFFFFFFFFF:012x}"


class Malformed(msgspec.Struct, frozen=True):
    """The data of a message whose envelope a transport could not read (a SQL log row whose
    headers are not a JSON object of strings, say): ``raw`` is the payload as received, ``reason``
    says what was wrong.

    It never reaches a handler: every decoder raises :meth:`error` for it, so the consumer
    dead-letters the message with ``raw`` as its data.
    """

    raw: bytes
    reason: str

    def error(self, type_name: str) -> DecodeError:
        """The DecodeError that a decoder into ``type_name`` raises for this payload."""
        return DecodeError(type_name, f"unreadable message envelope: {self.reason}")


class Message(msgspec.Struct, frozen=True, eq=False, gc=False):
    """An immutable envelope around one event.

    ``type`` is the stable event name (never an import path), ``data`` the event object in process
    or its encoded bytes at a transport, ``headers`` string pairs (correlation and causation ids,
    trace context), ``key`` the optional ordering key. ``id`` (a UUIDv7 string) and ``time`` are
    fixed when first read, so messages that never leave the process cost no id generation; use
    :meth:`restore` to rebuild a message whose id and time are known.

    Messages are not tracked by the cyclic garbage collector (a quarter of the in-process cost
    under load): an event that refers back to its own envelope would never be freed.
    """

    type: str
    data: Any
    headers: Headers = NO_HEADERS
    key: str | None = None
    _id: str | None = None
    _time: float | None = None

    @classmethod
    def restore(
        cls,
        type: str,
        data: Any,
        headers: Headers,
        key: str | None,
        id: str | None,
        time: float | None,
    ) -> Message:
        """A message with a known id and creation time (as read back from a transport)."""
        return cls(type, data, headers, key, id, time)

    @property
    def id(self) -> str:
        """The message id: a UUIDv7 string, generated on first use unless given."""
        if self._id is None:
            force_setattr(self, "_id", new_id(int(self.timestamp * 1000)))
        return self._id  # type: ignore[return-value]  # set just above

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch when the message was created (or first read)."""
        if self._time is None:
            force_setattr(self, "_time", time.time())
        return self._time  # type: ignore[return-value]  # set just above

    @property
    def time(self) -> datetime:
        """Creation time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp, UTC)

    def replace(self, **changes: Any) -> Message:
        """A copy with some of ``type``, ``data``, ``headers``, ``key`` changed; same id, time."""
        if self._id is None or self._time is None:
            self.id, self.timestamp  # noqa: B018  # fix both now, so the copy shares them
        return msgspec.structs.replace(self, **changes)

    def with_headers(self, extra: Headers) -> Message:
        """A copy whose headers are these headers updated with ``extra``."""
        return self.replace(headers={**self.headers, **extra})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.id == other.id
            and self.type == other.type
            and self.data == other.data
            and dict(self.headers) == dict(other.headers)
            and self.key == other.key
        )

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Message(type={self.type!r}, id={self.id!r}, key={self.key!r}, data={self.data!r})"
