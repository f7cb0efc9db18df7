"""A Message's envelope as Kafka record headers (byte values), and back.

The same headers as :func:`~tidings.transports.kit.wire.to_wire`, built in one step because it
runs for every record published. :func:`from_record` reads them back: records whose headers
are exactly what :func:`record_headers` writes are read in one step too, every other record
(another producer's, a nacked copy with its attempt, CloudEvents, bytes that are not UTF-8)
goes through :func:`~tidings.transports.kit.wire.from_wire` and its fallbacks.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings.message import NO_HEADERS, Message
from tidings.transports.kit.wire import ATTEMPT, ID, KEY, TIME, TYPE, from_wire

__all__ = ["from_record", "record_headers"]

_SET_BY_ENVELOPE = frozenset({ID, TYPE, TIME, KEY})
_READ_BY_KIT = frozenset({ID, TYPE, TIME, KEY, ATTEMPT})
"""Header names after the first three that only ``from_wire`` reads."""
_CLOUD_PREFIXES = ("ce-", "ce_", "cloudEvents:")
_LATEST = 253402300800.0
"""Year 10000, as ``from_wire`` takes it: later times are not times a producer meant."""


def record_headers(message: Message) -> list[tuple[str, bytes]]:
    """The envelope, then the message's own headers except those the envelope sets."""
    headers = [
        (ID, message.id.encode()),
        (TYPE, message.type.encode()),
        (TIME, repr(message.timestamp).encode()),
    ]
    if message.key is not None:
        headers.append((KEY, message.key.encode()))
    if message.headers:
        headers += [
            (k, v.encode()) for k, v in message.headers.items() if k not in _SET_BY_ENVELOPE
        ]
    return headers


def from_record(
    topic: str, value: object, headers: Sequence[tuple[str, bytes]]
) -> tuple[Message, int]:
    """The message of a record and its attempt number, as ``from_wire`` reads it. Never raises.

    Runs for every record consumed: the headers :func:`record_headers` wrote (id, type, time,
    the key, then plain UTF-8 user headers) are read here without the general path's checks per
    name; anything else falls back to ``from_wire``, which reads every case the same way.
    """
    if type(value) is bytes and len(headers) >= 3:
        (id_name, ident), (type_name, kind), (time_name, stamp) = headers[0], headers[1], headers[2]
        if id_name == ID and type_name == TYPE and time_name == TIME:
            try:
                read = _envelope(value, ident, kind, stamp, headers)
            except (UnicodeDecodeError, ValueError, AttributeError, TypeError):
                read = None  # not what record_headers writes: the general path says what it is
            if read is not None:
                return read, 1
    return from_wire(topic, value, dict(headers))


def _envelope(
    value: bytes, ident: bytes, kind: bytes, stamp: bytes, headers: Sequence[tuple[str, bytes]]
) -> Message | None:
    """The message, or None where only ``from_wire`` knows the answer; raises on bytes that are
    not UTF-8 or a time that is not a number."""
    ident_text, kind_text, seconds = ident.decode(), kind.decode(), float(stamp)
    if not (ident_text and kind_text and 0.0 <= seconds < _LATEST):
        return None
    if "\x00" in ident_text or "\x00" in kind_text:
        return None
    key = None
    user: dict[str, str] = {}
    for name, raw in headers[3:]:
        if name == KEY and key is None and not user:
            key = raw.decode()
            if "\x00" in key:
                return None
        elif name in _READ_BY_KIT or name.startswith(_CLOUD_PREFIXES):
            return None
        else:
            user[name] = raw.decode()
    return Message.restore(kind_text, value, user or NO_HEADERS, key, ident_text, seconds)
