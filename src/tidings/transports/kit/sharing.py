"""How the subscriptions of one group share a SQL queue's keys, across processes.

Every live subscription of a group is a *member* of its cursor: a row with the subscription's
owner id and the time it stops counting (``until``, a lease's length ahead, renewed with its
leases; deleted when it closes). Members are ranked by owner id; with ``n`` members, a keyed
message is leased only by the member whose rank is ``key_hash(key) % n`` (:class:`Share`).
Messages without a key go to whichever member asks first.

This spreads a group's keys over its workers, and a member that joins, leaves or dies (its row
runs out) moves keys at the next claim of each member. It does not decide order: the claim's
own rule (a key's message is never leased while an earlier one of that key is leased to another
subscription) keeps every key in order while a key changes hands, so the old owner's in-flight
messages of a moved key are handled before the new owner gets the next one.

The hash is the first 32 bits of the MD5 digest of the key's UTF-8 bytes, as an unsigned
big-endian integer: the same in every process and Python version, and computable in SQL
(PostgreSQL: ``('x' || substr(md5(key), 1, 8))::bit(32)::bigint``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Share", "key_hash"]


def key_hash(key: str | bytes) -> int:
    """The stable hash of ``key`` (its UTF-8 bytes): see the module docstring."""
    data = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:4], "big")


@dataclass(frozen=True, slots=True)
class Share:
    """The part of a group's keys one member leases: those whose hash is ``rank`` modulo
    ``members``."""

    rank: int
    members: int

    @classmethod
    def of(cls, owner: str, live: Sequence[str]) -> Share:
        """``owner``'s share among the ``live`` members' owner ids (it counts itself if it is
        missing, as when its own row is not written yet)."""
        owners = sorted({*live, owner})
        return cls(owners.index(owner), len(owners))
