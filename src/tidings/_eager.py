"""Run a coroutine until it first suspends, and only then pay for a Task.

Most handlers finish without ever suspending (they update a dict, append to a list). Starting them
eagerly, as Python 3.12's eager task factory does, costs a coroutine step instead of a Task and a
trip through the event loop; handlers that do suspend continue in a Task, concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start"]


def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Step ``coro`` once; ``None`` if it finished, else the Task running the rest of it.

    Exceptions raised before the first suspension propagate to the caller. The Task is created in
    the caller's context, so context variables set around this call are seen by the rest.
    """
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, suspended_on))


async def _finish(coro: Coroutine[Any, Any, None], suspended_on: Any) -> None:
    await _Resume(coro, suspended_on)


class _Resume:
    """Hands the future ``coro`` is waiting on to the Task, then keeps driving ``coro``."""

    __slots__ = ("_coro", "_suspended_on")

    def __init__(self, coro: Coroutine[Any, Any, None], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waiting = self._coro, self._suspended_on
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:  # cancellation and throw() go to the coroutine
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration:
                    return
