"""Which message is being handled right now, so events published there can point back to it.

Handlers that cannot suspend (plain functions, and ``async def`` bodies without ``await``) run
inline inside the bus; the message sits in a thread-local slot meanwhile (two attribute writes,
far cheaper than a context variable per call). Every other handler runs in a Task: a consume
loop's worker, which handles one message at a time, or a Task of its own; a context variable of
that Task holds the message. Running only non-suspending handlers inline keeps task-bound APIs
(``asyncio.timeout``, ``current_task``, cancel scopes) right for every handler that can use them.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any

from tidings.message import Message

__all__ = ["current_message", "handling", "in_task", "slot", "spawn"]


class _Slot(threading.local):
    message: Message | None = None


slot = _Slot()
"""``slot.message`` is the message whose inline handler is running in this thread (or None)."""

in_task: contextvars.ContextVar[Message | None] = contextvars.ContextVar(
    "tidings_current_message", default=None
)


def current_message() -> Message | None:
    """The message whose handler is running, if any."""
    return slot.message or in_task.get()


def handling(message: Message) -> None:
    """Mark ``message`` as the one the current Task handles (until the next call)."""
    in_task.set(message)


def spawn(coro: Coroutine[Any, Any, Any], message: Message) -> asyncio.Task[Any]:
    """Run ``coro`` in a Task of its own that handles ``message``."""
    context = contextvars.copy_context()
    context.run(in_task.set, message)
    return asyncio.get_running_loop().create_task(coro, context=context)
