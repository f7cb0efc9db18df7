"""What ``bus.health()`` reports: the state of every consumer, the one source of truth for
liveness and readiness checks.

A consumer is ``running``; ``restarting`` after an unexpected error in one of its parts (fetching
or a worker), waiting out a capped backoff; ``failed`` once it gave up (its restart policy ran
out), after which it fetches nothing more; ``stopped`` after ``unsubscribe`` or ``aclose``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ConsumerState", "Health", "RouteHealth"]

ConsumerState = Literal["running", "restarting", "failed", "stopped"]


@dataclass(frozen=True, slots=True)
class RouteHealth:
    """One route's consumer, as seen right now."""

    route: str
    topic: str
    group: str
    state: ConsumerState
    last_error: str | None
    """The latest unexpected error (type and message), kept after recovery."""
    restarts: int
    """Restarts since the consumer started."""
    in_flight: int
    """Messages the consumer holds: fetched ahead, waiting for their key, or being handled."""
    oldest_age: float | None
    """Seconds the longest-held of those has been held (None when it holds none)."""
    partitions: tuple[int, ...] | None = None
    """The partitions whose keyed messages this consumer reads now, the others being its group's
    other consumers'; None where the transport shares keys without partitions (in process,
    SQLite, PostgreSQL)."""


@dataclass(frozen=True, slots=True)
class Health:
    """Every consumer of a bus. ``ok`` when the bus runs and no consumer failed or restarts."""

    running: bool
    routes: tuple[RouteHealth, ...]

    @property
    def ok(self) -> bool:
        return self.running and all(r.state == "running" for r in self.routes)

    @property
    def failed(self) -> tuple[RouteHealth, ...]:
        """The consumers that gave up."""
        return tuple(r for r in self.routes if r.state == "failed")
