"""Structured logging of handler failures."""

from __future__ import annotations

import logging

from tidings.message import Message
from tidings.middleware import Handler, Middleware

__all__ = ["log_failures"]

_log = logging.getLogger("tidings.handler")


def log_failures(name: str = "handler", logger: logging.Logger = _log) -> Middleware:
    """Log each failed call with the message id, type and key as ``extra`` fields; re-raise."""

    def wrap(handler: Handler) -> Handler:
        async def logged(message: Message) -> None:
            try:
                await handler(message)
            except Exception as error:
                logger.warning(
                    "%s failed on %s %s: %s: %s",
                    name,
                    message.type,
                    message.id,
                    type(error).__name__,
                    error,
                    extra={
                        "tidings_handler": name,
                        "tidings_message_id": message.id,
                        "tidings_type": message.type,
                        "tidings_key": message.key,
                    },
                )
                raise

        return logged

    return wrap
