"""How a Message travels through brokers: payload bytes plus string headers.

Brokers with native headers (NATS, Kafka, AMQP, Redis stream fields) carry the envelope in these
headers; the user's headers travel beside them unchanged. :func:`from_wire` is the one way back,
for every transport, and it never raises: a message from another producer, whatever it carries,
reaches the consumer, which handles it or dead-letters it with the reason. Its fallbacks:

==================  ==========================================================================
``tidings-type``    missing or not UTF-8: the topic
``tidings-id``      missing or not UTF-8: a fresh id
``tidings-time``    missing or not a number of seconds since the epoch: the time it is first read
``tidings-key``     not UTF-8: decoded with replacement characters
``tidings-attempt`` missing or not a positive integer: 1 (brokers that count deliveries use theirs)
other headers       names and values that are not UTF-8 decoded with replacement characters
JSON headers        not a JSON object of strings: ``data`` becomes :class:`~tidings.Malformed`
==================  ==========================================================================

A message from a CloudEvents producer in binary mode is read the same way: when it has a
``ce-id``, its ``ce-id``, ``ce-type`` and ``ce-time`` (RFC 3339) give the id, type and time,
whatever else the broker's client filled in (also under the Kafka binding's ``ce_`` and the AMQP
binding's ``cloudEvents:`` prefixes; a bus with ``cloudevents=`` writes the same values in both
places). The ``ce-*`` headers stay among the message's headers, ``ce-source`` included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from tidings.message import NO_HEADERS, Malformed, Message

__all__ = ["ATTEMPT", "ID", "KEY", "TIME", "TYPE", "from_wire", "to_wire"]

ID = "tidings-id"
TYPE = "tidings-type"
TIME = "tidings-time"
KEY = "tidings-key"
ATTEMPT = "tidings-attempt"
"""Set by transports that redeliver by publishing again (Kafka, RabbitMQ): the next attempt."""

_ENVELOPE = frozenset({ID, TYPE, TIME, KEY, ATTEMPT})
_CLOUD = {
    f"{prefix}{name}": name
    for prefix in ("ce-", "ce_", "cloudEvents:")
    for name in ("id", "type", "time")
}
"""CloudEvents attributes in binary mode, under each binding's prefix: which field they give."""
_BINARY = (bytes, bytearray, memoryview)
_LATEST = 253402300800.0
"""Year 10000: later times (and negative ones) are not times a producer meant."""
_json_headers = msgspec.json.Decoder(dict[str, str]).decode


def to_wire(message: Message) -> dict[str, str]:
    """The headers that carry ``message``'s envelope and its own headers."""
    headers = dict(message.headers)
    headers[ID] = message.id
    headers[TYPE] = message.type
    headers[TIME] = repr(message.timestamp)
    if message.key is not None:
        headers[KEY] = message.key
    return headers


def from_wire(
    topic: str,
    data: object,
    headers: Mapping[Any, Any] | None,
    attempt: int | None = None,
    *,
    ident: object = None,
    kind: object = None,
    stamp: object = None,
    key: object = None,
    json_headers: object = None,
) -> tuple[Message, int]:
    """The message that :func:`to_wire` described, and its attempt number. Never raises.

    ``headers`` maps names (str or bytes) to values (str, bytes or anything a broker's header
    table holds; None is skipped): the envelope under the ``tidings-*`` names, the user's headers
    under theirs. Brokers that keep the envelope elsewhere (columns, stream fields, AMQP
    properties) pass its id, type, time and key as ``ident``, ``kind``, ``stamp`` and ``key``
    (``tidings-*`` headers take precedence), and ``json_headers``, the user's headers encoded as
    one JSON object, where they keep them so (SQL logs, Redis streams). ``attempt`` is the
    broker's own delivery count, when it keeps one; otherwise the ``tidings-attempt`` header
    counts. Each field falls back as the module docstring lists; when ``json_headers`` cannot be
    read the message's data is a :class:`~tidings.Malformed` holding the payload and the reason,
    for the consumer to dead-letter.
    """
    user: dict[str, str] = {}
    reason = None
    if json_headers is not None:
        try:
            user = _json_headers(json_headers)  # type: ignore[arg-type]  # checked by decoding
        except Exception as exc:  # any type, any content: a foreign row or entry
            reason = f"its headers are not a JSON object of strings ({_brief(exc)})"
    given = None
    if headers:
        for name, value in headers.items():
            if value is None:
                continue
            if type(name) is not str:
                name = _text(name)
            if name not in _ENVELOPE:
                user[name] = value if type(value) is str else _text(value)
            elif name == TYPE:
                kind = value
            elif name == ID:
                ident = value
            elif name == TIME:
                stamp = value
            elif name == KEY:
                key = value
            else:
                given = value
    if user and ("ce-id" in user or "ce_id" in user or "cloudEvents:id" in user):
        cloud = {field: user[name] for name, field in _CLOUD.items() if name in user}
        kind, ident = cloud.get("type", kind), cloud.get("id", ident)
        if "time" in cloud:
            stamp = _rfc3339(cloud["time"]) or stamp
    payload = data if type(data) is bytes else _payload(data)
    message = Message.restore(
        (kind is not None and _strict_text(kind)) or topic,
        payload if reason is None else Malformed(payload, reason),
        user or NO_HEADERS,
        None if key is None else _key(key),
        None if ident is None else _strict_text(ident),
        None if stamp is None else _seconds(stamp),
    )
    if attempt is None:
        attempt = 1 if given is None else _count(given)
    return message, attempt if attempt > 1 else 1


def _text(value: object) -> str:
    """Any header name or value as text: bytes decoded with replacement characters."""
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    if isinstance(value, _BINARY):
        return bytes(value).decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:  # an object whose __str__ fails: nothing of it is worth keeping
        return ""


def _strict_text(value: object) -> str | None:
    """Text for an id or a type: non-empty UTF-8 without NUL (which databases refuse), or None."""
    if type(value) is not str:
        if not isinstance(value, _BINARY):
            return None
        try:
            value = (value if type(value) is bytes else bytes(value)).decode()
        except UnicodeDecodeError:
            return None
    return value if value and "\x00" not in value else None


def _key(value: object) -> str | None:
    text = value if type(value) is str else _text(value)
    return None if "\x00" in text else text


def _seconds(value: object) -> float | None:
    """Seconds since the epoch, or None for what is not a number or not a time (NaN fails the
    comparison too)."""
    if type(value) is not float:
        try:
            value = float(value)  # type: ignore[arg-type]  # str, bytes, numbers; else caught
        except Exception:  # not a number
            return None
    return value if 0.0 <= value < _LATEST else None


def _rfc3339(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:  # not a time: the time it is first read
        return None


def _count(value: object) -> int:
    if type(value) is int:
        return value
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]  # else caught
    except Exception:  # not an integer
        return 1


def _payload(data: object) -> bytes:
    if data is None:
        return b""
    if isinstance(data, _BINARY):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8", "replace")
    return _text(data).encode("utf-8", "replace")


def _brief(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
