"""Tasks the bus starts and does not await at once, kept so that draining and closing can."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Background"]


class Background:
    """A set of running tasks; each leaves it when done."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def add(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Return once every task, including those started meanwhile, is done."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every task and wait for them to end."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
