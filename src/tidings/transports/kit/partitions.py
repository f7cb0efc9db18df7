"""Keys mapped to partitions: how brokers without native partitions keep per-key order.

A keyed message goes to one of ``count`` partitions, chosen by :func:`partition_of` (the key's
:func:`~.sharing.key_hash`, the one stable hash the SQL transports compute too, the same in every
process and Python version, unlike ``hash()``). Each
partition is consumed by one subscription of a group at a time (:mod:`.ownership` keeps who), so
a key's messages are handled in publish order however many workers a group has. A message
without a key has no partition: brokers spread those over every subscription of the group.

Names: a broker's object for partition ``n`` of ``name`` (a stream, a queue, a lease) is
:func:`partition_name` ``(name, n)``, ``name#n``. ``#`` is refused in topics
(:mod:`tidings.topics`), so a partition's name never equals a topic's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from tidings.transports.base import GroupInfo
from tidings.transports.kit.sharing import key_hash

__all__ = [
    "DEFAULT_PARTITIONS",
    "MAX_PARTITIONS",
    "check_partitions",
    "merge_groups",
    "partition_name",
    "partition_of",
]

DEFAULT_PARTITIONS = 16
"""Partitions per topic unless a transport's ``partitions`` option says otherwise: at most this
many workers of one group share a topic's keyed messages."""

MAX_PARTITIONS = 1024
"""The most partitions a topic may have (each is a broker object and a lease to keep)."""


def partition_of(key: str, count: int) -> int:
    """The partition of ``key`` among ``count``: stable across processes, hosts and versions."""
    return key_hash(key) % count


def partition_name(name: str, partition: int) -> str:
    """The name of ``name``'s object for ``partition``: ``name#partition``."""
    return f"{name}#{partition}"


def check_partitions(scheme: str, count: int) -> None:
    """Raise ValueError unless ``count`` is a partition count a transport accepts."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"{scheme} option partitions must be from 1 to {MAX_PARTITIONS}")


def merge_groups(infos: Iterable[GroupInfo]) -> list[GroupInfo]:
    """``infos`` of one (topic, group) summed into one (a group's topic stream or consumer and
    its partitions'), sorted by topic then group: lag and in flight added, the latest activity."""
    merged: dict[tuple[str, str], GroupInfo] = {}
    for info in infos:
        known = merged.get((info.topic, info.group))
        if known is not None:
            active = [t for t in (known.last_active, info.last_active) if t is not None]
            in_flight = None
            if known.in_flight is not None or info.in_flight is not None:
                in_flight = (known.in_flight or 0) + (info.in_flight or 0)
            info = replace(known, lag=known.lag + info.lag, in_flight=in_flight,
                           last_active=max(active) if active else None)  # fmt: skip
        merged[info.topic, info.group] = info
    return [merged[name] for name in sorted(merged)]
