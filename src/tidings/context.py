"""Which message is being handled right now, so events published there can point back to it.

Two ways a handler runs, two places the message is kept:

* Started eagerly (``publish_and_wait``, ``emit``): the first step runs synchronously inside the
  bus, with the message in a thread-local slot (two attribute writes, far cheaper than a context
  variable per call). A handler that suspends continues in a Task that puts its message back in
  the slot around every step it runs.
* In a consume loop's worker Task, which handles one message at a time: a context variable of
  that Task holds the message (:func:`handling`).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine, Generator
from typing import Any

from tidings.message import Message

__all__ = ["current_message", "handling", "resume", "slot", "start"]


class _Slot(threading.local):
    message: Message | None = None


slot = _Slot()
"""``slot.message`` is the message whose handler code is running in this thread (or None)."""


_in_task: contextvars.ContextVar[Message | None] = contextvars.ContextVar(
    "tidings_current_message", default=None
)


def current_message() -> Message | None:
    """The message whose handler is running, if any."""
    return slot.message or _in_task.get()


def handling(message: Message) -> None:
    """Mark ``message`` as the one the current Task handles (until the next call)."""
    _in_task.set(message)


def start(coro: Coroutine[Any, Any, Any], message: Message) -> asyncio.Task[Any] | None:
    """Run ``coro`` as the handling of ``message`` until it first suspends.

    Returns None if it finished, else the Task running the rest of it. Exceptions raised before
    the first suspension propagate.
    """
    outer = slot.message
    slot.message = message
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    finally:
        slot.message = outer
    return resume(coro, suspended_on, message)


def resume(
    coro: Coroutine[Any, Any, Any], suspended_on: Any, message: Message
) -> asyncio.Task[Any]:
    """A Task that continues ``coro``, which suspended on ``suspended_on``, as ``message``'s."""
    return asyncio.ensure_future(_finish(coro, suspended_on, message))


async def _finish(coro: Coroutine[Any, Any, Any], suspended_on: Any, message: Message) -> Any:
    return await _Resume(coro, suspended_on, message)


class _Resume:
    """Hands the future ``coro`` waits on to the Task, then keeps driving ``coro``."""

    __slots__ = ("_coro", "_message", "_suspended_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], suspended_on: Any, message: Message) -> None:
        self._coro = coro
        self._suspended_on = suspended_on
        self._message = message

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting, message = self._coro, self._suspended_on, self._message
        while True:
            thrown: BaseException | None = None
            try:
                sent = yield waiting
            except BaseException as exc:  # cancellation and throw() go to the coroutine
                thrown = exc
            outer = slot.message
            slot.message = message
            try:
                waiting = coro.send(sent) if thrown is None else coro.throw(thrown)
            except StopIteration as done:
                return done.value
            finally:
                slot.message = outer
