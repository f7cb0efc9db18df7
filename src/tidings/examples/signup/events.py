"""The event of the signup flow, and a deterministic stream of sample signups."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import tidings

__all__ = ["INVALID_EVERY", "UserSignedUp", "sample_signups"]


@tidings.event("user.signed_up")
@dataclass(frozen=True, slots=True)
class UserSignedUp:
    """A new user finished signing up."""

    user_id: int
    email: str
    name: str
    signed_up_at: datetime


INVALID_EVERY = 250
"""Every 250th sample user typed an address without "@" (4 per 1,000): their mail cannot work."""

_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")


def sample_signups(count: int, *, start: int = 1) -> Iterator[UserSignedUp]:
    """``count`` signups, user ids ``start``, ``start + 1``, …: the same id gives the same user."""
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    for user_id in range(start, start + count):
        first, last = _FIRST[user_id % len(_FIRST)], _LAST[user_id % len(_LAST)]
        local = f"{first}.{last}.{user_id}".lower()
        address = f"{local}.example.com" if user_id % INVALID_EVERY == 0 else f"{local}@example.com"
        yield UserSignedUp(user_id, address, f"{first} {last}", epoch + timedelta(seconds=user_id))
