"""tidings topic names and wildcard patterns on Kafka.

Topics map one to one (Kafka allows dots in names); names Kafka would refuse are refused here at
once, because aiokafka retries an illegal name until its request timeout instead of failing.
Wildcard patterns become anchored regular expressions for aiokafka's pattern subscription.
"""

from __future__ import annotations

import re

from tidings.topics import is_pattern, validate_pattern

__all__ = ["check_topic", "regex_for", "topic_regex"]

_LEGAL = re.compile(r"[A-Za-z0-9._-]{1,249}")
_LEGAL_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_ONE_TOKEN = r"[^.]+"


def check_topic(topic: str) -> str:
    """Return ``topic``, or raise ValueError when Kafka would reject the name."""
    if not _LEGAL.fullmatch(topic) or topic in (".", ".."):
        raise ValueError(
            f"{topic!r} is not a legal Kafka topic name: use 1-249 of A-Z a-z 0-9 . _ -"
        )
    return topic


def topic_regex(pattern: str, *, exclude: str) -> str:
    """The regular expression matching the topics of a wildcard ``pattern``, never ``exclude``.

    ``*`` is one token (``[^.]+``), ``>`` one or more; ``exclude`` keeps the dead-letter topic out
    of patterns such as ``>`` or ``tidings.*``. Raises ValueError for a token Kafka cannot hold.
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


def regex_for(topic: str, *, exclude: str) -> str | None:
    """What a subscription to ``topic`` subscribes with: the regex of a pattern, or None for a
    plain topic name (after checking it). Raises ValueError for what Kafka cannot hold."""
    validate_pattern(topic)
    if is_pattern(topic):
        return topic_regex(topic, exclude=exclude)
    check_topic(topic)
    return None
