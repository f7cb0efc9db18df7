"""What tidings names mean on Kafka: topic names, wildcard patterns, and client errors.

Topics map one to one (Kafka allows dots in names). Wildcard patterns become anchored regular
expressions for aiokafka's pattern subscription. aiokafka errors are mapped to
:class:`~tidings.errors.TransportError` here, at the boundary.
"""

from __future__ import annotations

import re

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)

from tidings.errors import ServiceUnavailable, TransportError
from tidings.message import Message
from tidings.topics import is_pattern, validate_pattern
from tidings.transports.kit.wire import ID, KEY, TIME, TYPE

__all__ = ["check_topic", "checked", "mapped", "record_headers", "topic_regex"]

_LEGAL = re.compile(r"[A-Za-z0-9._-]{1,249}")
_LEGAL_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_ONE_TOKEN = r"[^.]+"
_SET_BY_ENVELOPE = frozenset({ID, TYPE, TIME, KEY})
_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)


def check_topic(topic: str) -> str:
    """Return ``topic``, or raise ValueError when Kafka would reject the name.

    Checked here because aiokafka retries an illegal name until its request timeout instead of
    failing at once.
    """
    if not _LEGAL.fullmatch(topic) or topic in (".", ".."):
        raise ValueError(
            f"{topic!r} is not a legal Kafka topic name: use 1-249 of A-Z a-z 0-9 . _ -"
        )
    return topic


def topic_regex(pattern: str, *, exclude: str) -> str:
    """The regular expression matching the topics of a wildcard ``pattern``, never ``exclude``.

    ``*`` is one token (``[^.]+``), ``>`` one or more; ``exclude`` keeps the dead-letter topic out
    of patterns such as ``>`` or ``tidings.*``.
    """
    validate_pattern(pattern)
    parts: list[str] = []
    for token in pattern.split("."):
        if token == "*":
            parts.append(_ONE_TOKEN)
        elif token == ">":
            parts.append(rf"{_ONE_TOKEN}(?:\.{_ONE_TOKEN})*")
        elif _LEGAL_TOKEN.fullmatch(token):
            parts.append(re.escape(token))
        else:
            raise ValueError(f"{token!r} in {pattern!r} cannot be part of a Kafka topic name")
    body = r"\.".join(parts)
    return rf"^(?!{re.escape(exclude)}$){body}$"


def checked(topic: str, *, exclude: str) -> str | None:
    """The regex for a pattern, or None after checking a plain topic name."""
    validate_pattern(topic)
    if is_pattern(topic):
        return topic_regex(topic, exclude=exclude)
    check_topic(topic)
    return None


def mapped(exc: Exception, doing: str, where: str) -> TransportError:
    """The tidings error for an aiokafka error raised while ``doing`` something at ``where``."""
    if isinstance(exc, _UNREACHABLE):
        return ServiceUnavailable(f"Kafka is not reachable at {where} ({doing}): {exc}")
    if isinstance(exc, KafkaError):
        return TransportError(f"Kafka failed {doing} at {where}: {exc}")
    return TransportError(f"Kafka client failed {doing} at {where}: {exc!r}")


def record_headers(message: Message) -> list[tuple[str, bytes]]:
    """:func:`~tidings.transports.kit.wire.to_wire` in the form of Kafka record headers (byte
    values), built in one step because it runs for every record published: the envelope, then
    the message's own headers except those the envelope sets."""
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
