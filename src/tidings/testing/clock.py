"""A clock whose time moves only when code sleeps on it, so retry tests take no time."""

from __future__ import annotations

import asyncio

__all__ = ["FakeClock"]


class FakeClock:
    """``sleep`` records the delay, moves ``now`` forward by it and returns at once.

    Pass it to ``Bus(clock=...)``: retry backoffs and delayed redeliveries then follow their
    schedule in virtual time, and ``sleeps`` lists every delay that was asked for, in order.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is

    def advance(self, seconds: float) -> None:
        """Move time forward without sleeping."""
        self._now += seconds
