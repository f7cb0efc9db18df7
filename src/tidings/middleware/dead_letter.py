"""Move a message that failed its last attempt to the dead-letter store."""

from __future__ import annotations

import logging

from tidings.clock import Clock, SystemClock
from tidings.codec import Codec
from tidings.deadletters import DeadLetterStore, dead_letter_from, payload_bytes
from tidings.errors import DeadLettered
from tidings.message import Message
from tidings.middleware import Handler, Middleware
from tidings.middleware.retry import attempts_made

__all__ = ["dead_letter"]

_log = logging.getLogger("tidings.dead_letter")


def dead_letter(
    store: DeadLetterStore,
    *,
    topic: str,
    group: str,
    codec: Codec,
    clock: Clock | None = None,
) -> Middleware:
    """Store a failed message with its reason, then raise DeadLettered (from the error).

    Place it outside ``retry`` so that only the last attempt's failure is stored. Consumers ack a
    DeadLettered message: it is safe in the store and can be replayed from there.
    """
    now = (clock or SystemClock()).now

    def wrap(handler: Handler) -> Handler:
        async def guarded(message: Message) -> None:
            try:
                await handler(message)
            except Exception as error:
                letter = dead_letter_from(
                    message,
                    topic=topic,
                    group=group,
                    data=payload_bytes(message.data, codec),
                    error=error,
                    attempts=attempts_made(error),
                    failed_at=now(),
                )
                await store.add(letter)
                _log.warning(
                    "%s %s dead-lettered after %d attempt(s): %s: %s",
                    message.type,
                    message.id,
                    letter.attempts,
                    type(error).__name__,
                    error,
                )
                raise DeadLettered(letter.id, error) from error

        return guarded

    return wrap
