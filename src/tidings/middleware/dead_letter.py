"""Move a message that failed its last attempt to the dead-letter store."""

from __future__ import annotations

from tidings.clock import Clock, SystemClock
from tidings.codec import Codec
from tidings.dead_letters import DeadLetterStore, store_failure
from tidings.errors import DeadLettered
from tidings.message import Message
from tidings.middleware import Handler, Middleware
from tidings.middleware.retry import attempts_made

__all__ = ["dead_letter"]


def dead_letter(
    store: DeadLetterStore,
    *,
    topic: str,
    group: str,
    codec: Codec,
    clock: Clock | None = None,
) -> Middleware:
    """Store a failed message with its reason, then raise DeadLettered (from the error).

    Place it outside ``retry`` so that only the last attempt's failure is stored. The bus does
    the same for every route; this middleware is for handler chains run outside a bus.
    """
    now = (clock or SystemClock()).now

    def wrap(handler: Handler) -> Handler:
        async def guarded(message: Message) -> None:
            try:
                await handler(message)
            except Exception as error:
                letter = await store_failure(
                    store,
                    message,
                    topic=topic,
                    group=group,
                    codec=codec,
                    error=error,
                    attempts=attempts_made(error),
                    failed_at=now(),
                )
                raise DeadLettered(letter.id, error) from error

        return guarded

    return wrap
