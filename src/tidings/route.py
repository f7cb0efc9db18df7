"""A route: one subscription of a bus, with its handler chains built once."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.clock import Clock
from tidings.codec import BINARY, Codec, Registry
from tidings.handlers import UserHandler, decoder_for, describe, to_handler
from tidings.message import Malformed, Message
from tidings.middleware import Handler, Middleware, chain
from tidings.middleware.retry import Retry, retry
from tidings.middleware.timeout import timeout as timeout_middleware

__all__ = ["DEFAULT", "Default", "Route"]


class Default(enum.Enum):
    """The type of :data:`DEFAULT`."""

    BUS = "the bus's default"


DEFAULT = Default.BUS
"""An option left to the bus's default (``subscribe(timeout=…)``)."""


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
    batch_size: int = 100
    """For batch handlers (``list[Event]``): the most events one call receives."""
    queued_timeout: float | None = None
    """How long the consume loop lets one call run: ``timeout``, or the bus's default."""
    queued_handler: Handler = field(init=False, repr=False)
    """Decode, middleware, handler: the consume loop times calls, retries and dead-letters."""
    direct_handler: Handler = field(init=False, repr=False)
    """Decode, retry in place, timeout, middleware, handler: for publish_and_wait."""
    plain: bool = field(init=False, repr=False)
    """Calling ``handler`` with the event is all there is to do: no middleware, retry, timeout."""
    is_async: bool = field(init=False, repr=False)
    inline: bool = field(init=False, repr=False)
    """Plain, and it cannot suspend: the bus may run it right where the event is published."""
    batch: bool = field(init=False, repr=False)
    """The handler takes a list of events."""
    decode: Callable[[Message], Message] = field(init=False, repr=False)
    """The message with its data as the event the handler expects (raises DecodeError)."""
    inline_envelope: bool = field(init=False, repr=False)
    """A bare ``def`` taking the Message: the bus may call it right there with the message."""

    def accepts(self, data: Any) -> bool:
        """Whether ``data`` can go to the handler as it is, without decoding (never a
        :class:`~tidings.Malformed` payload: decoding raises its DecodeError)."""
        if self.event_type is None:
            return not isinstance(data, BINARY) and type(data) is not Malformed
        return type(data) is self.event_type

    def build(self, registry: Registry, clock: Clock) -> None:
        shape = describe(self.handler)
        if shape.batch and self.middleware:
            raise ValueError("batch handlers take no per-message middleware")
        if shape.batch and self.ordered and self.concurrency > 1:
            raise ValueError("ordered batch handlers need concurrency=1: batches would overlap")
        self.batch = shape.batch
        inner = to_handler(self.handler, shape)
        if self.middleware:
            inner = chain(*self.middleware)(inner)
        self.decode = decoder_for(self.event_type, self.codec, registry)
        decoding = _decoding(self.decode)
        self.queued_handler = decoding(inner)  # the consume loop times calls and retries
        if self.timeout is not None:
            inner = timeout_middleware(self.timeout, self.name)(inner)
        retrying = inner if self.retry.max_attempts == 1 else retry(self.retry, clock)(inner)
        self.direct_handler = decoding(retrying)
        self.is_async = shape.is_async
        bare = not (self.middleware or self.timeout or self.retry.max_attempts > 1 or self.batch)
        self.plain = bare and not shape.takes_message
        self.inline = self.plain and not shape.may_suspend
        self.inline_envelope = bare and shape.takes_message and not shape.is_async


def _decoding(decode: Callable[[Message], Message]) -> Middleware:
    def wrap(handler: Handler) -> Handler:
        async def decoded(message: Message) -> None:
            await handler(decode(message))

        return decoded

    return wrap
