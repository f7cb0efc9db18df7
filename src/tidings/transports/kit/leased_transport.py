"""What the SQLite and PostgreSQL transports share above their queues.

Both keep every message in a log table and hand it to groups through :mod:`.leased`
subscriptions, so they have the same :data:`FEATURES`, the same ``subscribe`` and the same
closing order: every subscription ends (writing its acks and nacks and giving back what it
never settled) before the database goes. A transport built on :class:`LeasedTransport` states
only its database's part: connecting, publishing, groups and dead letters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from tidings.errors import ClosedError
from tidings.transports.base import Features
from tidings.transports.kit.leased import LeasedSubscription, LeasedSubscriptions

__all__ = ["FEATURES", "LeasedTransport"]

FEATURES = Features(
    persistent=True,
    ordered_per_key=True,
    consumer_groups=True,
    native_delay=True,
    replays_history=True,
    wildcards=True,
)


class LeasedTransport(ABC):
    """The subscribing and closing side of a transport over a leased database queue; the
    subclass hands over its ``subscriptions`` and says how to :meth:`_disconnect`."""

    features = FEATURES

    def __init__(self, subscriptions: LeasedSubscriptions) -> None:
        self._subscriptions = subscriptions
        self._closed = False

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> LeasedSubscription:
        """A subscription of ``group`` to ``topic`` (or a wildcard pattern); at most ``prefetch``
        deliveries are handed out and not yet acked or nacked at any time."""
        self._check_open()
        return self._subscriptions.open(topic, group, prefetch)

    async def aclose(self) -> None:
        """End every subscription, write their acks and nacks, give back the leases of deliveries
        never settled (they come again), then disconnect from the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._subscriptions.shutdown()
        await self._disconnect()

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close the database connections, once, after every subscription ended."""

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
