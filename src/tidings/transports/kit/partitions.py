"""Keys mapped to partitions: how brokers without native partitions keep per-key order.

A keyed message goes to one of ``count`` partitions, chosen by :func:`partition_of` (CRC-32 of
the key's UTF-8 bytes, the same in every process and Python version, unlike ``hash()``). Each
partition is consumed by one subscription of a group at a time (:mod:`.ownership` keeps who), so
a key's messages are handled in publish order however many workers a group has. A message
without a key has no partition: brokers spread those over every subscription of the group.

Names: a broker's object for partition ``n`` of ``name`` (a stream, a queue, a lease) is
:func:`partition_name` ``(name, n)``, ``name#n``. ``#`` is refused in topics
(:mod:`tidings.topics`), so a partition's name never equals a topic's.
"""

from __future__ import annotations

import zlib

__all__ = [
    "DEFAULT_PARTITIONS",
    "MAX_PARTITIONS",
    "check_partitions",
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
    return zlib.crc32(key.encode()) % count


def partition_name(name: str, partition: int) -> str:
    """The name of ``name``'s object for ``partition``: ``name#partition``."""
    return f"{name}#{partition}"


def check_partitions(scheme: str, count: int) -> None:
    """Raise ValueError unless ``count`` is a partition count a transport accepts."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"{scheme} option partitions must be from 1 to {MAX_PARTITIONS}")
