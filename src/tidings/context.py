"""Where a handler is: the message it handles, the attempt, the route. :func:`current` tells.

Events published inside a handler point back to the message being handled (correlation and
causation ids), logs written there carry its ids (:mod:`tidings.logs`), and a handler can log
"attempt 2 of 5" without counting by hand. Keeping that costs next to nothing per message:

* Handlers that cannot suspend run inline inside the bus; the message and route sit in the
  thread's :class:`Inline` slot meanwhile. A publish reads the thread-local once and then writes
  plain attributes: each access to a thread-local costs about ten times a plain one, and a
  context variable's ``set`` more.
* Every other handler runs in a Task: a consume loop's worker, which handles one message at a
  time, or a Task of its own. A context variable of that Task holds what is being handled (the
  transport's delivery itself: it has the message and the attempt, nothing is allocated) and
  another its route (set once per worker). Tasks a handler starts inherit both, so what they
  publish still points back to the right message.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from tidings.message import Message
from tidings.topics import is_pattern

__all__ = [
    "Attempt",
    "Current",
    "Handled",
    "Inline",
    "Route",
    "current",
    "current_message",
    "in_task",
    "route_in_task",
    "spawn",
    "thread",
]


class Route(Protocol):
    """What the context needs of a route (:class:`tidings.route.Route` is one)."""

    name: str
    group: str
    topic: str


class Handled(Protocol):
    """What a Task handles: a message at one of its attempts (a transport's Delivery is one)."""

    @property
    def message(self) -> Message: ...

    @property
    def attempt(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Current:
    """Where the running handler is."""

    message: Message
    attempt: int
    """1 for the first delivery of the message to this route's group, 2 for the first retry…"""
    route: str
    """The route's name (the handler's qualified name unless ``subscribe(name=…)``)."""
    group: str
    topic: str
    """The topic the message was published to."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """A message handled in a Task of its own (``publish_and_wait``): which attempt it is."""

    message: Message
    attempt: int = 1


class Inline:
    """The message and route whose inline handler is running in one thread (None outside one)."""

    __slots__ = ("message", "route")

    def __init__(self) -> None:
        self.message: Message | None = None
        self.route: Route | None = None


class _Thread(threading.local):
    def __init__(self) -> None:
        self.inline = Inline()


thread = _Thread()
"""Per thread: ``thread.inline`` is that thread's :class:`Inline` slot."""

in_task: contextvars.ContextVar[Handled | None] = contextvars.ContextVar(
    "tidings_handled", default=None
)
route_in_task: contextvars.ContextVar[Route | None] = contextvars.ContextVar(
    "tidings_route", default=None
)


def current() -> Current | None:
    """Where the running handler is, or None outside a handler."""
    inline = thread.inline
    message, route, attempt, handled = inline.message, inline.route, 1, None
    if message is None:
        handled = in_task.get()
        if handled is None:
            return None
        message, attempt, route = handled.message, handled.attempt, route_in_task.get()
    if route is None:
        return Current(message, attempt, "", "", message.type)
    topic: str | None = getattr(handled, "topic", None)  # transports that know it say so
    if not topic:
        topic = message.type if is_pattern(route.topic) else route.topic
    return Current(message, attempt, route.name, route.group, topic)


def current_message() -> Message | None:
    """The message whose handler is running, if any."""
    message = thread.inline.message
    if message is not None:
        return message
    handled = in_task.get()
    return handled.message if handled is not None else None


def spawn(coro: Coroutine[Any, Any, Any], message: Message, route: Route) -> asyncio.Task[Any]:
    """Run ``coro`` in a Task of its own that handles ``message`` for ``route``."""
    context = contextvars.copy_context()
    context.run(in_task.set, Attempt(message))
    context.run(route_in_task.set, route)
    return asyncio.get_running_loop().create_task(coro, context=context)
