"""Topic names and wildcard patterns.

Topics are dot-separated tokens (``user.signed_up``). Patterns follow NATS: ``*`` matches exactly
one token (``user.*`` matches ``user.signed_up`` but not ``user.a.b``), ``>`` as the last token
matches one or more tokens (``user.>`` matches both). Every transport accepts these patterns and
translates them to its broker's own syntax where it has one.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["is_pattern", "matches", "validate_pattern"]


def is_pattern(topic: str) -> bool:
    return "*" in topic or ">" in topic


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` unchanged, or raise ValueError saying what is wrong with it."""
    tokens = pattern.split(".")
    for index, token in enumerate(tokens):
        if not token:
            raise ValueError(f"topic {pattern!r} has an empty token")
        if token == ">" and index != len(tokens) - 1:
            raise ValueError(f"'>' must be the last token of {pattern!r}")
        if ("*" in token or ">" in token) and token not in ("*", ">"):
            raise ValueError(f"wildcards must be whole tokens in {pattern!r}")
    return pattern


@lru_cache(maxsize=4096)
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
