"""Topic names and wildcard patterns: one rule for every transport.

Topics are dot-separated tokens (``user.signed_up``). Patterns follow NATS: ``*`` matches exactly
one token (``user.*`` matches ``user.signed_up`` but not ``user.a.b``), ``>`` as the last token
matches one or more tokens (``user.>`` matches both). Every transport accepts these patterns and
translates them to its broker's own syntax where it has one.

The rule, checked by every transport before anything reaches a broker (ValueError otherwise):

* a token is not empty and holds no whitespace and no ``#`` (AMQP's multi-word wildcard, which
  would mean something else on RabbitMQ than elsewhere);
* ``*`` and ``>`` are whole tokens, ``>`` only the last one;
* ``publish`` takes a topic (:func:`validate_topic`: no wildcard at all); ``subscribe`` takes a
  topic or a pattern (:func:`validate_pattern`).

A broker may limit names further (Kafka allows only ``A-Z a-z 0-9 . _ -``, up to 249).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["CACHE_SIZE", "is_pattern", "matches", "validate_pattern", "validate_topic"]

CACHE_SIZE = 4096
"""Topics a per-topic cache holds before it starts again: bounded memory for applications that
publish to many distinct topics, at the cost of recomputing a lookup."""


def is_pattern(topic: str) -> bool:
    return "*" in topic or ">" in topic


# Cached: transports check on every publish, and an application uses few topics. (Refusals
# raise, and a raising call is not cached.)
@lru_cache(maxsize=CACHE_SIZE)
def validate_pattern(pattern: str) -> str:
    """Return the topic or pattern unchanged, or raise ValueError saying what is wrong with it."""
    tokens = pattern.split(".")
    for index, token in enumerate(tokens):
        if not token:
            raise ValueError(f"topic {pattern!r} has an empty token")
        if "#" in token:
            raise ValueError(f"topic {pattern!r} contains '#'; use '>' for 'one or more tokens'")
        if any(c.isspace() for c in token):
            raise ValueError(f"topic {pattern!r} contains whitespace")
        if token == ">" and index != len(tokens) - 1:
            raise ValueError(f"'>' must be the last token of {pattern!r}")
        if ("*" in token or ">" in token) and token not in ("*", ">"):
            raise ValueError(f"wildcards must be whole tokens in {pattern!r}")
    return pattern


@lru_cache(maxsize=CACHE_SIZE)
def validate_topic(topic: str) -> str:
    """Return ``topic`` unchanged if messages can be published to it, or raise ValueError."""
    if is_pattern(topic):
        raise ValueError(f"cannot publish to the pattern {topic!r}; use a plain topic")
    return validate_pattern(topic)


@lru_cache(maxsize=CACHE_SIZE)
def matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` is matched by ``pattern`` (a plain topic matches only itself)."""
    if pattern == topic:
        return True
    if not is_pattern(pattern):
        return False
    wanted = pattern.split(".")
    actual = topic.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(actual) > index
        if index >= len(actual) or (token != "*" and token != actual[index]):
            return False
    return len(actual) == len(wanted)
