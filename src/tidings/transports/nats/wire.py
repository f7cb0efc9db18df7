"""How a Message travels as a NATS message: subject, payload and headers.

The message id travels as ``Nats-Msg-Id`` (JetStream de-duplicates re-sent messages by it), type,
time and key as the ``tidings-*`` headers of :mod:`tidings.transports.kit.wire`, the user's
headers beside them. nats-py writes and parses the header block: :func:`headers_for` checks
beforehand what it would refuse or quietly change, so a ``publish`` that cannot travel raises
before anything is sent; :func:`decode` reads what its parser made of another producer's headers
(values that are not UTF-8 come with replacement characters, lines without a colon or with a
name that is not ASCII are left out) with the never-raising fallbacks of
:func:`~tidings.transports.kit.wire.from_wire`.
"""

from __future__ import annotations

import re

from tidings.message import Headers, Message
from tidings.topics import validate_pattern
from tidings.transports.kit.wire import ID, from_wire, to_wire

__all__ = ["MSG_ID", "decode", "headers_for", "subject_for"]

MSG_ID = "Nats-Msg-Id"
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP token (RFC 9110): the header names nats-py publishes."""
_SUBJECT_TOKEN = re.compile(r"[^\s*>]+")
_checked_names: set[str] = set()


def subject_for(prefix: str, topic: str) -> str:
    """The NATS subject of ``topic`` (a pattern is allowed) under ``prefix``.

    Raises ValueError for an empty token, a misplaced wildcard or whitespace, which NATS would
    otherwise read as a protocol separator.
    """
    validate_pattern(topic)
    if any(not _SUBJECT_TOKEN.fullmatch(t) for t in topic.split(".") if t not in ("*", ">")):
        raise ValueError(f"topic {topic!r} contains whitespace")
    return f"{prefix}.{topic}"


def headers_for(message: Message, max_payload: int) -> tuple[dict[str, str], bytes]:
    """The NATS headers of ``message``, and the same as the header block of an ``HPUB``
    command. Raises ValueError for a header name that is not an HTTP token, a CR or LF in a
    name, value, type or key (nats-py would send a space instead), or a message larger than
    ``max_payload`` with its headers."""
    headers = to_wire(message)
    headers[MSG_ID] = headers.pop(ID)
    if message.headers:
        _check_names(message.headers)
    text = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    # Each header line has one CR and one LF; any other would be a line break in a value.
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        raise ValueError(f"a header, type or key of message {message.id} contains CR or LF")
    block = f"NATS/1.0\r\n{text}\r\n".encode()
    if (size := len(block) + len(message.data)) > max_payload:
        raise ValueError(
            f"message {message.id} has {size} bytes with headers; the limit is {max_payload}"
        )
    return headers, block


def _check_names(headers: Headers) -> None:
    for name in headers:
        if name not in _checked_names:
            if not _HEADER_NAME.fullmatch(name) or name == MSG_ID:
                raise ValueError(f"header name {name!r} cannot travel as a NATS header")
            _checked_names.add(name)


def decode(topic: str, data: bytes, headers: dict[str, str] | None) -> Message:
    """The message :func:`headers_for` described, or another producer's with the fallbacks of
    :func:`~tidings.transports.kit.wire.from_wire`. ``headers`` (nats-py's ``Msg.headers``) is
    consumed. The attempt is the server's delivery count, not a header."""
    ident = headers.pop(MSG_ID, None) if headers else None
    return from_wire(topic, data, headers, ident=ident)[0]
