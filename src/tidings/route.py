"""A route: one subscription of a bus, with its handler chains built once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.clock import Clock
from tidings.codec import Codec, Registry
from tidings.deadletters import DeadLetterStore
from tidings.handlers import UserHandler, decoder_for, describe, to_handler
from tidings.message import Message
from tidings.middleware import Handler, Middleware, chain
from tidings.middleware.dead_letter import dead_letter
from tidings.middleware.retry import NO_RETRY, Retry, retry
from tidings.middleware.timeout import timeout as timeout_middleware

__all__ = ["Route"]


@dataclass(eq=False)
class Route:
    """What ``bus.subscribe`` returns: a handler bound to a topic (or pattern) and a group.

    Each group receives every message published to a matching topic; routes of the same group
    share the work. ``concurrency`` bounds how many calls run at once for queued messages,
    ``ordered`` keeps messages with the same key in order.
    """

    topic: str
    group: str
    name: str
    handler: UserHandler
    event_type: type | None
    concurrency: int
    ordered: bool
    retry: Retry
    timeout: float | None
    codec: Codec
    middleware: Sequence[Middleware] = ()
    queued_handler: Handler = field(init=False, repr=False)
    """Decode, timeout, middleware, handler: the consume loop does retry and dead-letter itself."""
    direct_handler: Handler = field(init=False, repr=False)
    """Dead-letter, decode, retry in place, timeout, middleware, handler: for publish_and_wait."""
    sync_call: Callable[[Any], Any] | None = field(init=False, repr=False)
    """The plain function, when calling it directly is all there is to do (``Bus.emit``)."""

    def build(self, registry: Registry, dead_letters: DeadLetterStore, clock: Clock) -> None:
        shape = describe(self.handler)
        inner = to_handler(self.handler, shape)
        if self.timeout is not None:
            inner = timeout_middleware(self.timeout, self.name)(inner)
        if self.middleware:
            inner = chain(*self.middleware)(inner)
        decoding = _decoding(decoder_for(self.event_type, self.codec, registry))
        self.queued_handler = decoding(inner)
        self.direct_handler = chain(
            dead_letter(
                dead_letters, topic=self.topic, group=self.group, codec=self.codec, clock=clock
            ),
            decoding,
            retry(self.retry, clock),
        )(inner)
        plain = not (shape.is_async or shape.takes_message or self.middleware or self.timeout)
        self.sync_call = self.handler if plain and self.retry is NO_RETRY else None


def _decoding(decode: Callable[[Message], Message]) -> Middleware:
    def wrap(handler: Handler) -> Handler:
        async def decoded(message: Message) -> None:
            await handler(decode(message))

        return decoded

    return wrap
