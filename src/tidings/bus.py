"""The Bus: what applications hold. It registers handlers, publishes, and runs the consumers.

Delivery paths
--------------
``await bus.publish(event)``
    Hands the message to the transport and returns once it is accepted (queued in process, or
    acknowledged by the broker). Consumers run the handlers concurrently, bounded per route.
``await bus.publish_and_wait(event)``
    Runs every matching handler now and returns when all finished, with each outcome
    (:class:`~tidings.PublishResult`). Retries happen in place; a handler that fails its last
    attempt is dead-lettered and reported. Handlers that cannot suspend run inline; the others
    run concurrently, each in a Task.
``bus.emit(event)``
    Synchronous: handlers that cannot suspend and have no middleware are called right here, in
    subscription order; the others start in Tasks as in ``publish_and_wait`` (they need a
    running loop).

One failing handler never stops the others, on every path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from tidings import context
from tidings.clock import Clock, SystemClock
from tidings.codec import BINARY, Codec, JsonCodec, Registry, registry
from tidings.consumer import _STOPPING_PROCESS, Consumer
from tidings.deadletters import (
    REPLAY_GROUP_HEADER,
    DeadLetters,
    DeadLetterStore,
    store_failure,
)
from tidings.errors import ClosedError, MessageTooLarge, NotHandled
from tidings.handlers import UserHandler, name_of
from tidings.health import Health, RouteHealth
from tidings.message import NO_HEADERS, Message
from tidings.middleware import Middleware
from tidings.middleware.retry import NO_RETRY, Retry, attempts_made
from tidings.outcome import PublishResult
from tidings.route import DEFAULT, Default, Route
from tidings.topics import is_pattern, matches, validate_pattern, validate_topic
from tidings.transports import from_url
from tidings.transports.base import Transport
from tidings.transports.memory import ROUTE_CACHE_SIZE, MemoryTransport

__all__ = ["CAUSATION_ID", "CORRELATION_ID", "Bus"]

CORRELATION_ID = "correlation-id"
"""Header: the id of the message that started the chain of events."""
CAUSATION_ID = "causation-id"
"""Header: the id of the message whose handler published this one."""

_log = logging.getLogger("tidings.bus")


DEFAULT_HANDLER_TIMEOUT = 60.0
"""Seconds a queued handler call may run by default: a hung call must not hold its message (and
its key, and a broker's lease) for ever."""
DEFAULT_RESTART = Retry(
    max_attempts=20, initial_delay=0.1, max_delay=30.0, give_up_on=(ClosedError,)
)
"""How consumer parts start again after an unexpected error: about eight minutes of tries."""
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""Bytes of an encoded payload, as the brokers' own defaults (NATS, Kafka): 1 MiB."""
_BINARY_TYPES = frozenset(BINARY)

F = TypeVar("F", bound=Callable[..., Any])


class Bus:
    """Publish events and run handlers, in process or over a broker chosen by URL.

    ``Bus()`` runs in memory; ``Bus("sqlite:///app.db")`` is durable; broker URLs
    (``nats://``, ``kafka://``, ``amqp://``, ``redis://``, ``postgresql://``) move the same
    handlers onto a broker. With ``inline=True`` (for tests) ``publish`` runs the handlers before
    it returns, one after another in subscription order: deterministic.

    ``capacity`` bounds, per group, the in-process messages waiting for a handler (publishers
    wait beyond it). ``handler_timeout`` is how long a queued handler call may run before it
    fails with HandlerTimeout (``subscribe(timeout=…)`` overrides it per route; None: no limit).
    ``restart`` is how a consumer part that failed unexpectedly is started again; once it
    gives up, the consumer is ``failed`` in :meth:`health`. ``max_message_size`` bounds an
    encoded payload in bytes: publish refuses a larger one (MessageTooLarge) and consumers
    dead-letter one from another producer undecoded (None: no limit; in process nothing is
    encoded, so nothing is measured).
    """

    def __init__(
        self,
        url: str | Transport | None = None,
        *,
        codec: Codec | None = None,
        registry: Registry = registry,
        dead_letters: DeadLetterStore | None = None,
        middleware: Sequence[Middleware] = (),
        capacity: int = 1024,
        inline: bool = False,
        clock: Clock | None = None,
        handler_timeout: float | None = DEFAULT_HANDLER_TIMEOUT,
        restart: Retry = DEFAULT_RESTART,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        if url is None or url == "memory://":
            self.transport: Transport = MemoryTransport(capacity, self.clock)
        elif isinstance(url, str):
            self.transport = from_url(url)
        else:
            self.transport = url
        self.codec: Codec = codec or JsonCodec()
        self.registry = registry
        self.middleware = tuple(middleware)
        self.inline = inline
        self._in_process = self.transport.features.in_process
        transport = self.transport
        self._broker = transport.broker if isinstance(transport, MemoryTransport) else None
        self._dead_letter_store = dead_letters or self.transport.dead_letters()
        self.dead_letters = DeadLetters(self._dead_letter_store, self._republish)
        self._names: dict[type, str] = {}
        self._routes: list[Route] = []
        self._by_topic: dict[str, tuple[Route, ...]] = {}
        self._emit_calls: dict[type, tuple[Callable[[Any], Any], ...]] = {}
        self._emit_routes: dict[Callable[[Any], Any], Route] = {}
        self.handler_timeout = handler_timeout
        self.restart = restart
        self.max_message_size = max_message_size
        self._consumers: dict[Route, tuple[Consumer, asyncio.Task[None]]] = {}
        self._failed: list[Consumer] = []
        self._failure: asyncio.Event | None = None
        self._retiring: dict[Consumer, asyncio.Task[None]] = {}
        self._closing: asyncio.Future[None] | None = None
        self._cut_short: asyncio.Event | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._running = False
        self._closed = False

    # -- subscribing -------------------------------------------------------------------------

    @overload
    def subscribe(
        self,
        target: type | str,
        handler: None = None,
        *,
        group: str | None = None,
        name: str | None = None,
        concurrency: int = 1,
        ordered: bool = False,
        retry: Retry | None = None,
        timeout: float | Default | None = DEFAULT,
        middleware: Sequence[Middleware] = (),
        batch_size: int = 100,
    ) -> Callable[[F], F]: ...
    @overload
    def subscribe(
        self,
        target: type | str,
        handler: UserHandler,
        *,
        group: str | None = None,
        name: str | None = None,
        concurrency: int = 1,
        ordered: bool = False,
        retry: Retry | None = None,
        timeout: float | Default | None = DEFAULT,
        middleware: Sequence[Middleware] = (),
        batch_size: int = 100,
    ) -> Route: ...
    def subscribe(
        self,
        target: type | str,
        handler: UserHandler | None = None,
        *,
        group: str | None = None,
        name: str | None = None,
        concurrency: int = 1,
        ordered: bool = False,
        retry: Retry | None = None,
        timeout: float | Default | None = DEFAULT,
        middleware: Sequence[Middleware] = (),
        batch_size: int = 100,
    ) -> Route | Callable[[F], F]:
        """Call ``handler`` for every event of type ``target``, or on topic ``target``.

        Topics may be patterns: ``user.*`` matches one token, ``user.>`` one or more. Used
        without ``handler`` it is a decorator returning the function unchanged. ``group`` defaults
        to the handler's qualified name, so a restarted worker resumes its group; routes with the
        same group share messages. ``concurrency`` bounds how many calls run at once; ``ordered``
        keeps messages with the same key in order. ``retry`` defaults to a single attempt.
        ``timeout`` limits each call, on every path; when not given, queued calls have the
        bus's ``handler_timeout`` and ``publish_and_wait`` calls none (its caller waits). A
        handler whose parameter is ``list[Event]`` receives queued events in batches of up to
        ``batch_size`` (what has arrived; it never waits to fill a batch).
        """
        if handler is None:

            def decorate(func: F) -> F:
                self.subscribe(
                    target,
                    func,
                    group=group,
                    name=name,
                    concurrency=concurrency,
                    ordered=ordered,
                    retry=retry,
                    timeout=timeout,
                    middleware=middleware,
                    batch_size=batch_size,
                )
                return func

            return decorate
        if concurrency < 1 or batch_size < 1:
            raise ValueError("concurrency and batch_size must be at least 1")
        if isinstance(target, str):
            topic = validate_pattern(target) if is_pattern(target) else target
            event_type = None
        else:
            topic, event_type = self.registry.name_of(target), target
        label = name or f"{getattr(handler, '__module__', '')}.{name_of(handler)}"
        route = Route(
            topic=topic,
            group=group or label,
            name=label,
            handler=handler,
            event_type=event_type,
            concurrency=concurrency,
            ordered=ordered,
            retry=retry or NO_RETRY,
            timeout=None if timeout is DEFAULT else timeout,
            codec=self.codec,
            middleware=(*self.middleware, *middleware),
            batch_size=batch_size,
        )
        route.queued_timeout = self.handler_timeout if timeout is DEFAULT else timeout
        route.build(self.registry, self.clock)
        self._routes.append(route)
        self._routes_changed()
        if self._running and not self.inline:
            self._start_consumer(route)
        return route

    def unsubscribe(self, route: Route) -> None:
        """Stop delivering to ``route``; returns at once.

        Another route of the same group and topic takes over what was queued for it. Otherwise,
        in process, the messages already accepted for its group are still handled (``drain`` and
        ``aclose`` wait for them) and no new ones are queued for it; on a broker the group keeps
        its messages for the next subscriber, and what the consumer had fetched ahead is given
        back.
        """
        self._routes.remove(route)
        self._routes_changed()
        running = self._consumers.pop(route, None)
        if running is None:
            return
        consumer, task = running
        self._track(task)
        self._retiring[consumer] = task
        task.add_done_callback(lambda _: self._retiring.pop(consumer, None))
        shared = any(r.topic == route.topic and r.group == route.group for r in self._routes)
        if self._broker is not None and not shared:
            self._broker.retire(route.topic, route.group)  # its consumer ends once it is empty
        else:
            self._track(asyncio.ensure_future(consumer.stop(release_buffered=True)))

    def _routes_changed(self) -> None:
        self._by_topic.clear()
        self._emit_calls.clear()
        self._emit_routes.clear()

    def routes_for(self, topic: str) -> tuple[Route, ...]:
        """The routes a message on ``topic`` reaches, in subscription order."""
        try:
            return self._by_topic[topic]
        except KeyError:
            found = tuple(r for r in self._routes if matches(r.topic, topic))
            if len(self._by_topic) >= ROUTE_CACHE_SIZE:
                self._by_topic.clear()  # bounded: many distinct topics cost a recomputation
            self._by_topic[topic] = found
            return found

    # -- publishing --------------------------------------------------------------------------

    def message(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """The envelope ``publish`` would send for ``event``; a Message passes through.

        Inside a handler the new message carries the handled message's correlation id and, as
        causation id, its id.
        """
        kind = type(event)
        if kind is Message:
            return event  # type: ignore[no-any-return]
        parent = context.slot.message or context.in_task.get()  # current_message(), inlined
        if parent is not None:
            linked = dict(headers) if headers else {}
            linked.setdefault(CORRELATION_ID, parent.headers.get(CORRELATION_ID) or parent.id)
            linked[CAUSATION_ID] = parent.id
            headers = linked
        name = self._names.get(kind) or self._name_of(kind)
        return Message(name, event, headers or NO_HEADERS, key)

    def _name_of(self, kind: type) -> str:
        name = self._names[kind] = self.registry.name_of(kind)
        return name

    async def publish(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        topic: str | None = None,
    ) -> Message:
        """Hand ``event`` to the transport; returns the message once it is accepted.

        Waits while a subscriber's channel is full (backpressure). Raises ClosedError when the
        bus is not running (use ``async with bus:``), TransportError when the broker fails.
        """
        message = self.message(event, key=key, headers=headers)
        if self.inline:  # no transport checks the topic here
            validate_topic(topic or message.type)
            for route in self.routes_for(topic or message.type):
                await self._run_direct(route, message)
            return message
        if not self._running:
            raise _not_running()
        if self._broker is not None and self._broker.offer(topic or message.type, message):
            return message
        await self.transport.publish(topic or message.type, [self._outgoing(message)])
        return message

    async def publish_many(self, events: Iterable[Any], *, topic: str | None = None) -> None:
        """Publish several events of one topic in one transport call (one broker round trip)."""
        messages = [self.message(e) for e in events]
        if not messages:
            return
        if not self._running:
            raise _not_running()
        by_topic: dict[str, list[Message]] = {}
        for message in messages:
            by_topic.setdefault(topic or message.type, []).append(self._outgoing(message))
        for name, batch in by_topic.items():
            await self.transport.publish(name, batch)

    def publish_nowait(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        topic: str | None = None,
    ) -> Message:
        """Queue ``event`` in process without waiting; raises QueueFull when a channel is full."""
        if not isinstance(self.transport, MemoryTransport):
            raise TypeError("publish_nowait needs the in-process transport; use await publish()")
        if not self._running:
            raise _not_running()
        message = self.message(event, key=key, headers=headers)
        self.transport.publish_nowait(topic or message.type, message)
        return message

    async def publish_and_wait(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        topic: str | None = None,
    ) -> PublishResult:
        """Run every matching handler in this process and return their outcomes.

        The bus need not be running. Handlers that cannot suspend (``def``, or ``async def``
        without ``await``, and no middleware) run inline, in subscription order; the others run
        concurrently in Tasks. It returns when all have finished (retries included); handlers
        that failed their last attempt are in the dead-letter store by then. Raises ClosedError
        once the bus was closed, before any handler runs.
        """
        if self._closed:
            raise ClosedError("the bus was closed")
        message = self.message(event, key=key, headers=headers)
        validate_topic(topic or message.type)
        routes = self._by_topic.get(topic or message.type) or self.routes_for(topic or message.type)
        errors: dict[Route, BaseException] | None = None
        if self.inline:
            for route in routes:
                if (error := await self._run_direct(route, message)) is not None:
                    errors = errors or {}
                    errors[route] = error
            return PublishResult(message, routes, errors)
        pending: dict[Route, asyncio.Task[Any]] | None = None
        data = message.data
        kind = type(data)
        raw = kind in _BINARY_TYPES
        slot = context.slot
        outer, slot.message = slot.message, message
        try:
            for route in routes:
                expected = route.event_type
                as_is = not raw and (expected is None or expected is kind)
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
                        pending[route] = context.spawn(route.direct_handler(message), message)
                except _STOPPING_PROCESS:
                    raise
                except BaseException as error:  # the handler's own, CancelledError too: it fails
                    errors = errors or {}
                    errors[route] = error
        finally:
            slot.message = outer
        if pending:
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
        if errors:
            for route, failure in errors.items():
                await self._dead_letter(route, message, failure)
        return PublishResult(message, routes, errors)

    def emit(
        self, event: Any, *, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Deliver ``event`` to local handlers now, synchronously, in subscription order.

        Handlers without middleware or retry that cannot suspend (``def``, or ``async def``
        without ``await``) run right here. Others start in Tasks, as in ``publish_and_wait``,
        without being awaited (they need a running event loop). A failing handler is logged and
        dead-lettered; the others still run.
        """
        try:
            calls = self._emit_calls[type(event)]
        except KeyError:
            calls = self._compile_emit(type(event))
        for call in calls:
            try:
                call(event)
            except _STOPPING_PROCESS:
                raise
            except BaseException as error:  # the handler's own, CancelledError too: it fails
                route = self._emit_routes[call]
                message = self.message(event, key=key, headers=headers)
                self._run_soon(self._dead_letter(route, message, error), message)

    def _compile_emit(self, event_type: type) -> tuple[Callable[[Any], Any], ...]:
        calls: list[Callable[[Any], Any]] = []
        for route in self.routes_for(self.registry.name_of(event_type)):
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

    def _envelope_caller(self, route: Route) -> Callable[[Any], None]:
        def call(event: Any) -> None:
            route.handler(self.message(event))

        return call

    def _starter(self, route: Route) -> Callable[[Any], None]:
        def start(event: Any) -> None:
            message = self.message(event)
            self._run_soon(self._run_direct(route, message), message)

        return start

    def _run_soon(self, coro: Coroutine[Any, Any, Any], message: Message) -> None:
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
        self._track(context.spawn(coro, message))

    def _track(self, task: asyncio.Future[Any]) -> None:
        """Keep ``task`` until it is done, so ``drain`` waits for it."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_direct(self, route: Route, message: Message) -> BaseException | None:
        """Run ``route``'s handler in place; dead-letter and return its error if it fails."""
        try:
            await route.direct_handler(message)
        except _STOPPING_PROCESS:
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
            self._dead_letter_store,
            message,
            topic=message.type if is_pattern(route.topic) else route.topic,
            group=route.group,
            codec=self.codec,
            error=error,
            attempts=attempts_made(error),
            failed_at=self.clock.now(),
        )

    def _outgoing(self, message: Message) -> Message:
        """The message as the transport carries it: encoded unless the transport is in process.
        Raises MessageTooLarge for a payload past ``max_message_size``."""
        if self._in_process:
            return message
        if not isinstance(message.data, bytes):
            message = message.replace(data=self.codec.encode(message.data))
        limit = self.max_message_size
        if limit is not None and len(message.data) > limit:
            raise MessageTooLarge(len(message.data), limit)
        return message

    async def _republish(self, topic: str, message: Message) -> None:
        if self._in_process and not self._running:
            group = message.headers.get(REPLAY_GROUP_HEADER)
            for route in self.routes_for(topic):
                if group in (None, route.group):
                    await self._run_direct(route, message)
            return
        await self.transport.publish(topic, [message])

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the transport and start a consumer per route. Idempotent."""
        if self._closed:
            raise ClosedError("the bus was closed")
        if self._running:
            return
        await self.transport.start()
        self._running = True
        if not self.inline:  # inline publishing never reaches the transport
            for route in self._routes:
                self._start_consumer(route)

    def _start_consumer(self, route: Route) -> None:
        # In process a batch costs nothing to hold (and counts against the channel's capacity);
        # brokers lease what they prefetch.
        prefetch = 1024 if self._in_process else max(64, route.concurrency * 2)
        subscription = self.transport.subscribe(route.topic, group=route.group, prefetch=prefetch)
        consumer = Consumer(
            route,
            subscription,
            self._dead_letter_store,
            self.clock,
            prefetch=prefetch,
            timeout=route.queued_timeout,
            restart=self.restart,
            max_size=self.max_message_size,
            on_failed=self._consumer_failed,
        )
        task = asyncio.create_task(consumer.run(), name=f"tidings consumer {route.name}")
        self._consumers[route] = (consumer, task)

    def _consumer_failed(self, consumer: Consumer) -> None:
        self._failed.append(consumer)
        if self._failure is not None:
            self._failure.set()

    def health(self) -> Health:
        """Every running consumer's state (see :mod:`tidings.health`), and failed ones."""
        consumers = [consumer for consumer, _ in self._consumers.values()]
        consumers += [c for c in self._failed if c not in consumers]
        return Health(self._running, tuple(c.health() for c in consumers))

    async def consumer_failed(self) -> RouteHealth:
        """Wait until a consumer gives up (its restart policy ran out); returns its health."""
        if self._failure is None:
            self._failure = asyncio.Event()
            if self._failed:
                self._failure.set()
        await self._failure.wait()
        return self._failed[0].health()

    async def drain(self) -> None:
        """Wait until every message published so far was handled (in process: transports
        with ``join()``; a broker's handlers are not waited for)."""
        join = getattr(self.transport, "join", None)
        if join is not None:
            await join()
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop the consumers and close the transport. Idempotent.

        In process, every accepted message is handled first. On brokers, fetching stops,
        handlers in flight finish and are acked, messages fetched but not started are given
        back. If ``timeout`` seconds pass first, running handlers are cancelled and their
        messages given back too; in process, where nothing outlives the bus, everything not
        handled (queued, fetched ahead, waiting for a retry) is moved to the dead-letter store
        as NotHandled: never dropped. Called from a task that is being cancelled (Ctrl-C under
        ``asyncio.run``), it waits for nothing, as with ``timeout=0``. The transport is closed
        in every case.
        """
        caller = asyncio.current_task()
        if caller is not None and caller.cancelling():
            timeout = 0.0  # the caller is being cancelled (Ctrl-C under asyncio.run): wait for none
        if self._closing is not None:  # closing already: wait for it, cut short at our timeout
            assert self._cut_short is not None
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._closing)
            except TimeoutError:
                self._cut_short.set()
                await asyncio.shield(self._closing)
            return
        self._closed = True
        self._closing = asyncio.get_running_loop().create_future()
        self._cut_short = asyncio.Event()
        try:
            if self._running:
                await self._stop_consumers(timeout, self._cut_short)
        finally:
            self._running = False
            try:
                await self.transport.aclose()
            finally:
                self._closing.set_result(None)

    async def _stop_consumers(self, timeout: float | None, cut_short: asyncio.Event) -> None:
        """Drain gracefully; after ``timeout``, when another close cuts it short, or when an
        in-process consumer has failed (its messages can no longer drain), stop at once."""
        graceful = asyncio.ensure_future(self._drain_and_stop())
        stops = [asyncio.ensure_future(cut_short.wait())]
        if self._in_process:
            if self._failure is None:
                self._failure = asyncio.Event()
                if self._failed:
                    self._failure.set()
            stops.append(asyncio.ensure_future(self._failure.wait()))
        try:
            done, _ = await asyncio.wait(
                (graceful, *stops), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            graceful.cancel()
            raise
        finally:
            for stop in stops:
                stop.cancel()
        if graceful in done:
            graceful.result()
        else:
            graceful.cancel()
            await asyncio.wait((graceful,))
            await self._abort_consumers()
        self._consumers.clear()

    async def _drain_and_stop(self) -> None:
        await self.drain()
        for consumer, _ in self._consumers.values():
            await consumer.stop(release_buffered=not self._in_process)
        tasks = [task for _, task in self._consumers.values()]
        if tasks:
            await asyncio.wait(tasks)
        await self.drain()  # what unsubscribed routes still had

    async def _abort_consumers(self) -> None:
        """Cancel every handler, give back what consumers hold, and in process keep what was
        not handled as NotHandled dead letters."""
        running = {**dict(self._consumers.values()), **self._retiring}
        for consumer in running:
            await consumer.abort()
        if running:
            await asyncio.wait(running.values())
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background)
        await self._report_unhandled()

    async def _report_unhandled(self) -> None:
        take = getattr(self.transport, "take_unhandled", None)
        if take is None:
            return
        reason = NotHandled("the bus closed before this message was handled")
        for topic, group, messages in take():
            for message in messages:
                await store_failure(
                    self._dead_letter_store,
                    message,
                    topic=topic if not is_pattern(topic) else message.type,
                    group=group,
                    codec=self.codec,
                    error=reason,
                    attempts=0,
                    failed_at=self.clock.now(),
                )

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)


def _not_running() -> ClosedError:
    return ClosedError("the bus is not running: use `async with bus:` or `await bus.start()`")


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
