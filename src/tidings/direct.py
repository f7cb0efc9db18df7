"""Delivery in place: ``publish_and_wait`` and ``emit`` run the handlers of this process now,
without the transport.

Handlers that cannot suspend (``def``, or ``async def`` without ``await``, and no middleware) run
inline, in subscription order: no Task, no context variable (the message sits in the thread's
slot, see :mod:`tidings.context`). The others run concurrently, each in a Task of its own.
A handler's own exceptions, ``BaseException``s and a ``CancelledError`` it raised included, fail
that handler alone: it is dead-lettered and the others still run. ``KeyboardInterrupt`` and
``SystemExit`` stop the process, as they should.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from tidings import context
from tidings.background import Background
from tidings.clock import Clock
from tidings.codec import BINARY, Codec, Registry
from tidings.context import Attempt, in_task, route_in_task
from tidings.dead_letters import REPLAY_GROUP_HEADER, DeadLetterStore, store_failure
from tidings.errors import STOPPING_PROCESS
from tidings.message import Message
from tidings.middleware.retry import attempts_made
from tidings.outcome import PublishResult
from tidings.route import Route
from tidings.route_table import RouteTable
from tidings.telemetry import Observer
from tidings.topics import CACHE_SIZE, is_pattern, validate_topic

__all__ = ["Direct"]

_BINARY_TYPES = frozenset(BINARY)
_log = logging.getLogger("tidings.bus")

MakeMessage = Callable[..., Message]


class Direct:
    """The in-place delivery paths of one bus."""

    def __init__(
        self,
        routes: RouteTable,
        registry: Registry,
        make_message: MakeMessage,
        dead_letters: DeadLetterStore,
        codec: Codec,
        clock: Clock,
        background: Background,
    ) -> None:
        self._routes = routes
        self._registry = registry
        self._message = make_message
        self._dead_letters = dead_letters
        self._codec = codec
        self._clock = clock
        self._background = background
        self.observer: Observer | None = None
        """Spans and metrics for the handlers run here, when the application configured them."""
        self._checked: dict[str, tuple[Route, ...]] = {}
        """The routes of each topic ``run`` checked (a topic, not a pattern)."""
        self._emit_calls: dict[type, tuple[Callable[[Any], Any], ...]] = {}
        self._emit_routes: dict[Callable[[Any], Any], Route] = {}
        routes.on_change(self._forget_compiled)

    async def run(self, message: Message, topic: str, *, in_span: bool = False) -> PublishResult:
        """Run every handler of ``topic`` for ``message``; return when all have finished.

        Raises ValueError, before any handler runs, when ``topic`` is a pattern or no topic.
        When the bus observes, the call opens its ``send`` span and goes on inside it
        (``in_span``), every handler in a Task with its ``process`` span; otherwise handlers that
        cannot suspend run right here. (One coroutine for both: a second one around this would
        cost a frame per publish.)
        """
        routes = self._checked.get(topic)
        if routes is None:
            routes = self._check(topic)
        observed = self.observer is not None
        if observed and not in_span:
            assert self.observer is not None
            with self.observer.sending(topic, [message]) as (carried,):
                return await self.run(carried, topic, in_span=True)
        errors: dict[Route, BaseException] | None = None
        pending: dict[Route, asyncio.Task[Any]] | None = None
        data = message.data
        kind = type(data)
        inline = not observed and kind not in _BINARY_TYPES
        here = context.thread.inline
        outer, outer_route, here.message = here.message, here.route, message
        try:
            for route in routes:
                expected = route.event_type
                as_is = inline and (expected is None or expected is kind)
                here.route = route
                try:
                    if as_is and route.inline:
                        if route.is_async:  # it cannot suspend: awaiting it never yields
                            await route.handler(data)  # type: ignore[misc]
                        else:
                            route.handler(data)
                    elif as_is and route.inline_envelope:
                        route.handler(message)
                    else:
                        pending = pending or {}
                        pending[route] = context.spawn(
                            (route.observed_handler if observed else route.direct_handler)(message),
                            message,
                            route,
                        )
                except STOPPING_PROCESS:
                    raise
                except BaseException as error:  # the handler's own, CancelledError too: it fails
                    errors = errors or {}
                    errors[route] = error
        finally:
            here.message, here.route = outer, outer_route
        if pending:
            errors = await _outcomes(pending, errors)
        if errors:
            for route, failure in errors.items():
                await self._dead_letter(route, message, failure)
        return PublishResult(message, routes, errors)

    def _check(self, topic: str) -> tuple[Route, ...]:
        validate_topic(topic)
        if len(self._checked) >= CACHE_SIZE:
            self._checked.clear()  # bounded, as the route table's own cache
        routes = self._checked[topic] = self._routes.for_topic(topic)
        return routes

    async def run_each(self, message: Message, topic: str) -> PublishResult:
        """Run the handlers of ``topic`` one after another, in subscription order."""
        routes = self._routes.for_topic(topic)
        errors: dict[Route, BaseException] | None = None
        for route in routes:
            if (error := await self._run_here(route, message)) is not None:
                errors = errors or {}
                errors[route] = error
        return PublishResult(message, routes, errors)

    async def replay(self, topic: str, message: Message) -> None:
        """Run a replayed dead letter's handlers: its group's only, when it names one."""
        group = message.headers.get(REPLAY_GROUP_HEADER)
        for route in self._routes.for_topic(topic):
            if group in (None, route.group):
                await self.run_one(route, message)

    async def _run_here(self, route: Route, message: Message) -> BaseException | None:
        """``run_one`` in the caller's Task, which handles ``message`` for ``route`` meanwhile
        (for :func:`tidings.current`, and what the handler publishes points back to it)."""
        handled, routed = in_task.set(Attempt(message)), route_in_task.set(route)
        try:
            return await self.run_one(route, message)
        finally:
            route_in_task.reset(routed)
            in_task.reset(handled)

    async def run_one(self, route: Route, message: Message) -> BaseException | None:
        """Run ``route``'s handler in place; dead-letter and return its error if it fails."""
        try:
            if self.observer is None:
                await route.direct_handler(message)
            else:
                await route.observed_handler(message)
        except STOPPING_PROCESS:
            raise
        except asyncio.CancelledError as error:
            caller = asyncio.current_task()
            if caller is not None and caller.cancelling():
                raise  # cancelled from outside, not the handler's doing
            await self._dead_letter(route, message, error)
            return error
        except BaseException as error:  # the handler's own BaseExceptions fail it too
            await self._dead_letter(route, message, error)
            return error
        return None

    async def _dead_letter(self, route: Route, message: Message, error: BaseException) -> None:
        await store_failure(
            self._dead_letters,
            message,
            topic=message.type if is_pattern(route.topic) else route.topic,
            group=route.group,
            codec=self._codec,
            error=error,
            attempts=attempts_made(error),
            failed_at=self._clock.now(),
        )

    def emit(self, event: Any, key: str | None, headers: Mapping[str, str] | None) -> None:
        """Call or start each handler of ``event``'s type now (see ``Bus.emit``)."""
        if self.observer is not None:
            message = self._message(event, key=key, headers=headers)
            with self.observer.sending(message.type, [message]) as (carried,):
                self._emit_observed(self.observer, carried)
            return
        try:
            calls = self._emit_calls[type(event)]
        except KeyError:
            calls = self._compile(type(event))
        for call in calls:
            try:
                call(event)
            except STOPPING_PROCESS:
                raise
            except BaseException as error:  # the handler's own, CancelledError too: it fails
                route = self._emit_routes[call]
                message = self._message(event, key=key, headers=headers)
                self._run_soon(self._dead_letter(route, message, error), message, route)

    def _compile(self, event_type: type) -> tuple[Callable[[Any], Any], ...]:
        calls: list[Callable[[Any], Any]] = []
        for route in self._routes.for_topic(self._registry.name_of(event_type)):
            if route.inline_envelope:
                call = self._envelope_caller(route)
            elif not (route.inline and route.event_type in (None, event_type)):
                call = self._starter(route)
            elif route.is_async:
                call = functools.partial(_run_with, route.handler)
            else:
                call = route.handler  # type: ignore[assignment]  # a plain def: returns None
            if self._emit_routes.get(call, route) is not route:
                call = functools.partial(call)  # one function, two routes: tell them apart
            self._emit_routes[call] = route
            calls.append(call)
        self._emit_calls[event_type] = tuple(calls)
        return self._emit_calls[event_type]

    def _emit_observed(self, observer: Observer, message: Message) -> None:
        """``emit`` with each handler in its ``process`` span: those that cannot suspend run
        here, the others start in Tasks."""
        topic = message.type
        for route in self._routes.for_topic(topic):
            as_is = route.inline and route.event_type in (None, type(message.data))
            if not (as_is or route.inline_envelope):
                self._run_soon(self.run_one(route, message), message, route)
                continue
            with observer.processing(route.group, topic, [message], 1):
                try:
                    if route.inline_envelope:
                        route.handler(message)
                    elif route.is_async:
                        _run_with(route.handler, message.data)
                    else:
                        route.handler(message.data)
                except STOPPING_PROCESS:
                    raise
                except BaseException as error:  # no retry for these: it is final
                    observer.outcome(route.group, topic, "dead_lettered", error)
                    self._run_soon(self._dead_letter(route, message, error), message, route)
                else:
                    observer.outcome(route.group, topic, "ok", None)

    def _forget_compiled(self) -> None:
        self._checked.clear()
        self._emit_calls.clear()
        self._emit_routes.clear()

    def _envelope_caller(self, route: Route) -> Callable[[Any], None]:
        def call(event: Any) -> None:
            route.handler(self._message(event))

        return call

    def _starter(self, route: Route) -> Callable[[Any], None]:
        def start(event: Any) -> None:
            message = self._message(event)
            self._run_soon(self.run_one(route, message), message, route)

        return start

    def _run_soon(self, coro: Coroutine[Any, Any, Any], message: Message, route: Route) -> None:
        """Run ``coro`` in a Task that ``drain`` waits for; outside an event loop, run it here
        if it completes without suspending (a memory dead-letter store does)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                _run_inline(coro)
            except RuntimeError:
                _log.exception("%s needs a running event loop; it did not run", message.id)
            return
        self._background.add(context.spawn(coro, message, route))


async def _outcomes(
    pending: dict[Route, asyncio.Task[Any]], errors: dict[Route, BaseException] | None
) -> dict[Route, BaseException] | None:
    """Wait for the handlers' Tasks (cancelling them if the caller is cancelled); add their
    failures to ``errors``."""
    try:
        await asyncio.wait(pending.values())
    except asyncio.CancelledError:
        for task in pending.values():
            task.cancel()
        raise
    for route, task in pending.items():
        if task.cancelled():  # only the handler itself can have cancelled its Task
            failure: BaseException | None = asyncio.CancelledError("raised by the handler")
        else:
            failure = task.exception()
        if failure is not None:
            errors = errors or {}
            errors[route] = failure
    return errors


def _run_inline(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that cannot suspend to its end, right here."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("a handler that was expected not to suspend did suspend")


def _run_with(handler: Callable[[Any], Any], event: Any) -> None:
    _run_inline(handler(event))
