"""A deadline for each handler call."""

from __future__ import annotations

import asyncio

from tidings.errors import HandlerTimeout
from tidings.message import Message
from tidings.middleware import Handler, Middleware

__all__ = ["timeout"]


def timeout(seconds: float, name: str = "handler") -> Middleware:
    """Cancel a call that runs longer than ``seconds`` and raise HandlerTimeout instead.

    Only handlers that suspend can be interrupted; a handler blocking the loop is not.
    """

    def wrap(handler: Handler) -> Handler:
        async def limited(message: Message) -> None:
            try:
                async with asyncio.timeout(seconds):
                    await handler(message)
            except TimeoutError as exc:
                if isinstance(exc, HandlerTimeout):
                    raise
                raise HandlerTimeout(name, seconds) from exc

        return limited

    return wrap
