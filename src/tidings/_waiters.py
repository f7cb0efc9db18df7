"""Futures that wait for something: their turn (the pattern asyncio.Queue uses for its getters and
putters), or a position to move (readers of a log waiting for what is appended next)."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Wakeup", "wake_one"]


def wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    """Resolve the first waiter still waiting (cancelled ones are skipped)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


class Wakeup:
    """Tracks the highest readable position and wakes the tasks waiting for it to move.

    Each waiter has its own future: a shared one would be cancelled for everyone when one waiter
    times out.
    """

    __slots__ = ("_waiters", "closed", "head")

    def __init__(self, head: int = 0) -> None:
        self.head = head
        self.closed = False
        self._waiters: set[asyncio.Future[None]] = set()

    def advance(self, head: int) -> None:
        """New events are readable up to ``head``: wake every waiter."""
        if head > self.head:
            self.head = head
        self._wake()

    def reset(self, head: int) -> None:
        """Set the head exactly (it goes down when the last events were erased)."""
        self.head = head

    def close(self) -> None:
        """Wake every waiter and make later waits return at once."""
        self.closed = True
        self._wake()

    async def wait(self, after: int, timeout: float) -> None:
        """Return once the head passes ``after``, the wake-up closes, or ``timeout`` elapses."""
        if self.head > after or self.closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def _wake(self) -> None:
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
