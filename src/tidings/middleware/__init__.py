"""Middleware: one shape, ``Handler -> Handler``.

A :data:`Handler` takes a :class:`~tidings.Message` (its ``data`` already the event object) and
returns when the message is handled; raising means it was not. :func:`chain` composes middleware,
the first listed running outermost::

    handler = chain(log_failures(), timeout(5.0))(handler)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import reduce
from typing import Any

from tidings.message import Message

__all__ = ["Handler", "Middleware", "chain"]

Handler = Callable[[Message], Coroutine[Any, Any, None]]
Middleware = Callable[[Handler], Handler]


def chain(*middleware: Middleware) -> Middleware:
    """One middleware that applies ``middleware`` with the first listed outermost."""

    def wrap(handler: Handler) -> Handler:
        return reduce(lambda inner, outer: outer(inner), reversed(middleware), handler)

    return wrap
