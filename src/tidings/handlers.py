"""Turning a user's function into a Handler, and messages into the events it expects.

A user's handler is ``def`` or ``async def``; its one parameter is the event (the subscribed type,
or whatever was published for a topic subscription), or, when annotated as ``Message``, the whole
envelope, or, when annotated ``list[Event]``, a batch of events.
"""

from __future__ import annotations

import collections.abc
import dis
import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, overload

from tidings.codec import BINARY, Codec, Registry
from tidings.context import current_message
from tidings.errors import UnknownEventType
from tidings.message import Malformed, Message
from tidings.middleware import Handler

__all__ = [
    "Decoder",
    "EventDecoder",
    "Shape",
    "Replies",
    "Subscriber",
    "UserHandler",
    "describe",
    "event_decoder_for",
    "message_decoder",
    "name_of",
    "replying",
    "to_handler",
]

UserHandler = Callable[[Any], object]

E = TypeVar("E")
R = TypeVar("R")


class Subscriber(Protocol[E]):
    """What ``bus.subscribe(Event)`` returns as a decorator: it takes a handler of ``Event``, of
    its :class:`~tidings.message.Message`, or of ``list[Event]`` (a batch handler), and returns
    it unchanged; a handler of another event type is a type error."""

    @overload
    def __call__(self, func: Callable[[E], R], /) -> Callable[[E], R]: ...
    @overload
    def __call__(self, func: Callable[[Message], R], /) -> Callable[[Message], R]: ...
    @overload
    def __call__(self, func: Callable[[list[E]], R], /) -> Callable[[list[E]], R]: ...


Decoder = Callable[[Message], Message]
EventDecoder = Callable[[Message], Any]


@dataclass(frozen=True, slots=True)
class Shape:
    """What a user handler looks like: sync or async, taking the event or the Message, and
    whether it can suspend (an ``async def`` whose body never awaits cannot)."""

    is_async: bool
    takes_message: bool
    may_suspend: bool
    batch: bool = False
    """It takes ``list[Event]``: queued messages come in batches, one-off ones as a list of one."""
    replies: bool = False
    """Its return annotation says it returns something: what it returns answers a request."""


def describe(func: UserHandler) -> Shape:
    target = func.__call__ if not inspect.isroutine(func) else func  # type: ignore[operator]
    is_async = inspect.iscoroutinefunction(target)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: treat as a plain event handler
        hints = {}
    params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
    annotation = hints.get(params[0].name) if params else None
    batch = typing.get_origin(annotation) in (list, Sequence, collections.abc.Sequence)
    replies = hints.get("return", type(None)) is not type(None) and not batch
    suspends = is_async and (replies or _may_suspend(target))  # a reply is published: awaited
    return Shape(is_async, annotation is Message, suspends, batch, replies)


class Replies(Protocol):
    """Where a replying handler's return value goes (:class:`tidings.requests.Replier`)."""

    async def reply(self, request: Message | None, result: Any) -> None: ...
    def reply_soon(self, request: Message | None, result: Any) -> None: ...


def replying(func: UserHandler, shape: Shape, replies: Replies) -> UserHandler:
    """``func`` that sends what it returns as the reply to the message being handled (when
    that message is a request); it returns None itself."""
    if shape.is_async:
        call = typing.cast(Callable[[Any], Awaitable[Any]], func)

        async def reply_after(argument: Any) -> None:
            result = await call(argument)
            if result is not None:
                await replies.reply(current_message(), result)

        return reply_after

    def reply_soon_after(argument: Any) -> None:
        result = func(argument)
        if result is not None:
            replies.reply_soon(current_message(), result)

    return reply_soon_after


def _may_suspend(func: Callable[..., Any]) -> bool:
    """False only when ``func``'s own code has no suspension point (no await, async for/with).

    Read from the code object, not by running it: running a coroutine to learn whether it
    suspends would run the handler. A coroutine yields to the event loop only from a
    YIELD_VALUE instruction in its own frame (``await``, ``async for`` and ``async with`` all
    compile to one, on every CPython since 3.5; nested functions and comprehensions have their
    own code objects and suspend only through an ``await`` here). tests/core/test_suspension.py
    checks each form on the running interpreter, so a CPython that changes this fails there.
    A wrong "cannot suspend" costs concurrency, never correctness: the call is awaited in place
    either way, and ``emit`` (which cannot await) dead-letters a call that did suspend."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is None or inspect.unwrap(func) is not func:
        return True  # a wrapper or a callable object: assume the worst
    return any(op.opname == "YIELD_VALUE" for op in dis.get_instructions(code))


def name_of(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or type(func).__qualname__


def to_handler(func: UserHandler, shape: Shape) -> Handler:
    """A Handler calling ``func`` with the event (or the Message, or a list of one event)."""
    if shape.batch:
        return _one_as_batch(func, shape.is_async)
    if shape.is_async:
        call = typing.cast(Callable[[Any], Coroutine[Any, Any, None]], func)
        if shape.takes_message:
            return call

        async def with_event(message: Message) -> None:
            await call(message.data)

        return with_event

    if shape.takes_message:

        async def sync_with_message(message: Message) -> None:
            func(message)

        return sync_with_message

    async def sync_with_event(message: Message) -> None:
        func(message.data)

    return sync_with_event


def _one_as_batch(func: UserHandler, is_async: bool) -> Handler:
    async def batch_of_one(message: Message) -> None:
        result = func([message.data])
        if is_async:
            await typing.cast(Awaitable[None], result)

    return batch_of_one


def event_decoder_for(event_type: type | None, codec: Codec, registry: Registry) -> EventDecoder:
    """A function giving a message's ``data`` as the event object the handler expects.

    Objects of the subscribed type pass through untouched (the in-process case); bytes and dicts
    are decoded into the type. For topic subscriptions the registry names the class by message
    type; unknown types are decoded to plain JSON values. Raises DecodeError on bad input, and for
    a :class:`~tidings.Malformed` payload (a message whose envelope could not be read).
    """
    if event_type is not None:
        expected = event_type

        def typed(message: Message) -> Any:
            data = message.data
            return data if type(data) is expected else codec.convert(data, expected)

        return typed

    def by_name(message: Message) -> Any:
        data = message.data
        if not isinstance(data, BINARY):
            if type(data) is Malformed:
                raise data.error(message.type)
            return data
        try:
            cls: type = registry.class_of(message.type)
        except UnknownEventType:
            cls = object
        return codec.decode(data, cls)

    return by_name


def message_decoder(event_of: EventDecoder) -> Decoder:
    """The whole message with ``data`` as ``event_of`` gives it (the same message if unchanged)."""

    def decode(message: Message) -> Message:
        data = event_of(message)
        return message if data is message.data else message.replace(data=data)

    return decode
