"""Futures that wait their turn (the pattern asyncio.Queue uses for its getters and putters)."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["wake_one"]


def wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    """Resolve the first waiter still waiting (cancelled ones are skipped)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return
