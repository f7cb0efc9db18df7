"""A route: one subscription of a bus, with its handler chains built once."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from tidings.clock import Clock
from tidings.codec import Codec, Registry
from tidings.context import current
from tidings.defaults import DEFAULT_CONCURRENCY
from tidings.errors import STOPPING_PROCESS
from tidings.handlers import (
    EventDecoder,
    Replies,
    UserHandler,
    describe,
    event_decoder_for,
    message_decoder,
    name_of,
    replying,
    to_handler,
)
from tidings.message import Message
from tidings.middleware import Handler, Middleware, chain
from tidings.middleware.retry import NO_RETRY, Retry, retry
from tidings.middleware.timeout import timeout as timeout_middleware
from tidings.telemetry import Observer
from tidings.telemetry.observer import final_outcome
from tidings.topics import is_pattern, validate_pattern

__all__ = ["DEFAULT", "Default", "Route", "RouteOptions", "new_route"]


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
    observed_handler: Handler = field(init=False, repr=False)
    """The same, with a ``process`` span and an outcome per attempt: when the bus observes."""
    plain: bool = field(init=False, repr=False)
    """Calling ``handler`` with the event is all there is to do: no middleware, retry, timeout."""
    is_async: bool = field(init=False, repr=False)
    inline: bool = field(init=False, repr=False)
    """Plain, and it cannot suspend: the bus may run it right where the event is published."""
    batch: bool = field(init=False, repr=False)
    """The handler takes a list of events."""
    event_of: EventDecoder = field(init=False, repr=False)
    """The event the handler expects, from a message's data (raises DecodeError)."""
    decode: Callable[[Message], Message] = field(init=False, repr=False)
    """The message with its data as the event the handler expects (raises DecodeError)."""
    inline_envelope: bool = field(init=False, repr=False)
    """A bare ``def`` taking the Message: the bus may call it right there with the message."""
    observer: Observer | None = field(default=None, init=False, repr=False)
    """The bus's spans and metrics, when the application configured them."""

    def build(self, registry: Registry, clock: Clock, replies: Replies | None = None) -> None:
        shape = describe(self.handler)
        if shape.replies and replies is not None:
            self.handler = replying(self.handler, shape, replies)
        if shape.batch and self.middleware:
            raise ValueError("batch handlers take no per-message middleware")
        if shape.batch and self.ordered and self.concurrency > 1:
            raise ValueError("ordered batch handlers need concurrency=1: batches would overlap")
        self.batch = shape.batch
        inner = to_handler(self.handler, shape)
        if self.middleware:
            inner = chain(*self.middleware)(inner)
        self.event_of = event_decoder_for(self.event_type, self.codec, registry)
        self.decode = message_decoder(self.event_of)
        decoding = _decoding(self.decode)
        self.queued_handler = decoding(inner)  # the consume loop times calls and retries
        if self.timeout is not None:
            inner = timeout_middleware(self.timeout, self.name)(inner)
        retrying = inner if self.retry.max_attempts == 1 else retry(self.retry, clock)(inner)
        self.direct_handler = decoding(retrying)
        observed = _observed(self)(decoding(inner))
        many = self.retry.max_attempts > 1
        self.observed_handler = retry(self.retry, clock)(observed) if many else observed
        self.is_async = shape.is_async
        bare = not (self.middleware or self.timeout or self.retry.max_attempts > 1 or self.batch)
        self.plain = bare and not shape.takes_message
        self.inline = self.plain and not shape.may_suspend
        self.inline_envelope = bare and shape.takes_message and not shape.is_async


class RouteOptions(TypedDict, total=False):
    """The options of ``Bus.subscribe``."""

    group: str | None
    """Routes with the same group share messages; defaults to the route's name, so a restarted
    worker resumes its group."""
    name: str | None
    """The route's name in health, logs and traces; defaults to the handler's module and
    qualified name."""
    concurrency: int
    """How many calls run at once: by default 64 for an ``async def`` handler that awaits, 1
    for any other (:data:`tidings.defaults.DEFAULT_CONCURRENCY`)."""
    ordered: bool
    """Keep messages with the same key in order (False)."""
    retry: Retry | None
    """How a failing call is tried again; defaults to a single attempt."""
    timeout: float | Default | None
    """Limits each call, on every path; when not given, queued calls have the bus's
    ``handler_timeout`` and ``publish_and_wait`` calls none (its caller waits)."""
    middleware: Sequence[Middleware]
    """Runs inside the bus's middleware."""
    batch_size: int
    """At most this many events per call of a ``list[Event]`` handler (100); a batch is what has
    arrived: it never waits to fill one."""


def _concurrency_for(handler: UserHandler) -> int:
    shape = describe(handler)
    return DEFAULT_CONCURRENCY if shape.may_suspend and not shape.batch else 1


def new_route(
    target: type | str,
    handler: UserHandler,
    registry: Registry,
    codec: Codec,
    *,
    bus_middleware: Sequence[Middleware],
    handler_timeout: float | None,
    **options: Unpack[RouteOptions],
) -> Route:
    """The route ``Bus.subscribe`` makes: ``bus_middleware`` and ``handler_timeout`` are the bus's,
    the options (with their defaults here) the caller's. Raises ValueError for a bad option or
    pattern."""
    concurrency = options["concurrency"] if "concurrency" in options else _concurrency_for(handler)
    batch_size = options.get("batch_size", 100)
    if concurrency < 1 or batch_size < 1:
        raise ValueError("concurrency and batch_size must be at least 1")
    if isinstance(target, str):
        topic = validate_pattern(target) if is_pattern(target) else target
        event_type = None
    else:
        topic, event_type = registry.name_of(target), target
    label = options.get("name") or f"{getattr(handler, '__module__', '')}.{name_of(handler)}"
    timeout = options.get("timeout", DEFAULT)
    return Route(
        topic=topic,
        group=options.get("group") or label,
        name=label,
        handler=handler,
        event_type=event_type,
        concurrency=concurrency,
        ordered=options.get("ordered", False),
        retry=options.get("retry") or NO_RETRY,
        timeout=None if timeout is DEFAULT else timeout,
        codec=codec,
        middleware=(*bus_middleware, *options.get("middleware", ())),
        batch_size=batch_size,
        queued_timeout=handler_timeout if timeout is DEFAULT else timeout,
    )


def _observed(route: Route) -> Middleware:
    """A ``process`` span and an outcome for each attempt in place, when the bus observes."""

    def wrap(handler: Handler) -> Handler:
        async def observed(message: Message) -> None:
            observer = route.observer
            assert observer is not None  # used only when the bus observes
            here = current()
            attempt = here.attempt if here is not None else 1
            topic = message.type if is_pattern(route.topic) else route.topic
            with observer.processing(route.group, topic, [message], attempt):
                try:
                    await handler(message)
                except STOPPING_PROCESS:
                    raise
                except BaseException as error:
                    final = route.retry.next_delay(error, attempt) is None
                    outcome = final_outcome(error) if final else "retried"
                    observer.outcome(route.group, topic, outcome, error)
                    raise
                observer.outcome(route.group, topic, "ok", None)

        return observed

    return wrap


def _decoding(decode: Callable[[Message], Message]) -> Middleware:
    def wrap(handler: Handler) -> Handler:
        async def decoded(message: Message) -> None:
            await handler(decode(message))

        return decoded

    return wrap
