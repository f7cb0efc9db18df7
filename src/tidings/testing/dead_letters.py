"""A dead-letter store wrapper that keeps the letters this process added, and signals each one."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence

from tidings.dead_letters import PAGE_SIZE, DeadLetter, DeadLetterStore

__all__ = ["RecordingDeadLetters"]


class RecordingDeadLetters:
    """Stores through ``store``; ``added`` lists the letters added here, in order, and
    ``changed`` is set after each (pass an event of your own to share it with other signals)."""

    def __init__(self, store: DeadLetterStore, changed: asyncio.Event | None = None) -> None:
        self.store = store
        self.added: builtins.list[DeadLetter] = []
        self.changed = changed or asyncio.Event()

    async def add(self, letter: DeadLetter) -> None:
        await self.store.add(letter)
        self.added.append(letter)
        self.changed.set()

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        return await self.store.list(topic=topic, limit=limit, after=after)

    async def get(self, letter_id: str) -> DeadLetter:
        return await self.store.get(letter_id)

    async def remove(self, letter_ids: Sequence[str]) -> int:
        return await self.store.remove(letter_ids)

    async def until(self, count: int, timeout: float) -> None:
        """Wait until ``count`` letters were added; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.added) < count:
                self.changed.clear()
                await self.changed.wait()
