"""The Bus: what applications hold. It registers handlers, publishes, and runs the consumers.

A facade over four parts: the routes (:mod:`tidings.route_table`), the in-place delivery paths
``publish_and_wait`` and ``emit`` (:mod:`tidings.direct`), the consumers and how they stop
(:mod:`tidings.running`), and the transport. ``await bus.publish(event)`` hands the message to
the transport and returns once it is accepted (queued in process, or acknowledged by the
broker); consumers run the handlers concurrently, bounded per route. One failing handler never
stops the others, on every path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, Unpack, overload

from tidings.background import Background
from tidings.clock import Clock, SystemClock
from tidings.cloudevents import CloudEvents, CloudEventsEnvelopes
from tidings.codec import Codec, JsonCodec, Registry, registry
from tidings.dead_letters import DeadLetters, DeadLetterStore
from tidings.defaults import DEFAULT_HANDLER_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_RESTART
from tidings.direct import Direct
from tidings.envelopes import Envelopes
from tidings.errors import ClosedError
from tidings.handlers import Subscriber, UserHandler, event_decoder_for
from tidings.health import Health, RouteHealth
from tidings.message import CAUSATION_ID, CORRELATION_ID, Message
from tidings.middleware import Middleware
from tidings.middleware.retry import Retry
from tidings.outcome_stream import OutcomeStream, StreamOptions
from tidings.publishing import Publishing
from tidings.requests import Replier, Requests
from tidings.resource import Resource
from tidings.route import Route, RouteOptions, new_route
from tidings.route_table import RouteTable
from tidings.running import Closing, Consumers
from tidings.sending import Sender
from tidings.telemetry import Observer, Telemetry, configured, system_of
from tidings.transports import from_url, redact
from tidings.transports.base import LocalTransport, Transport
from tidings.transports.memory import MemoryTransport

__all__ = ["CAUSATION_ID", "CORRELATION_ID", "Bus"]

F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E")


class Bus(Publishing, Resource):
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
    encoded, so nothing is measured). ``telemetry`` names the OpenTelemetry providers to use;
    by default the global ones, if the application set them (see :mod:`tidings.telemetry`).
    ``cloudevents`` adds CloudEvents attributes to what it publishes (:mod:`tidings.cloudevents`).
    ``url`` is the URL given, passwords as ``***`` (None for a Transport); ``routes`` lists routes.
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
        telemetry: Telemetry | None = None,
        cloudevents: CloudEvents | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.url = redact(url) if isinstance(url, str) else None
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
        self.handler_timeout = handler_timeout
        self.restart = restart
        self.max_message_size = max_message_size
        transport = self.transport
        local = transport if isinstance(transport, LocalTransport) else None
        self._local = local if transport.features.in_process else None
        self._offer = self._local.offer if self._local is not None else None
        self._sender = Sender(transport, self._local, self.codec, max_message_size)
        self._system = system_of(url if isinstance(url, str) else type(transport).__module__)
        self._observer: Observer | None = None
        self._telemetry = telemetry
        self._looked = False  # for the application's OpenTelemetry set-up (see tidings.telemetry)
        self._dead_letter_store = dead_letters or transport.dead_letters()
        self.dead_letters = DeadLetters(self._dead_letter_store, self._republish)
        self._envelopes = (
            Envelopes(registry)
            if cloudevents is None
            else CloudEventsEnvelopes(registry, cloudevents, self._system)
        )
        self._replier = Replier(self._envelopes.make, self._send)
        self._routes = RouteTable()
        background = Background()
        self._direct = Direct(
            self._routes,
            registry,
            self.message,
            self._dead_letter_store,
            self.codec,
            self.clock,
            background,
        )
        self._consumers = Consumers(
            transport, self._local, self._dead_letter_store, self.codec, self.clock, background
        )
        local_routes = self._local.route if self._local is not None else None
        responders = self._routes.for_topic if inline else local_routes
        decode = event_decoder_for(None, self.codec, registry)
        self._requests = Requests(
            self._envelopes.make,
            self._send,
            self._subscribe_inbox,
            decode,
            responders=responders,
            confirm_open=not (transport.features.replays_history or transport.features.in_process),
        )
        self._closing = Closing()
        self._running = self._closed = False

    # -- subscribing -------------------------------------------------------------------------

    @overload
    def subscribe(
        self, target: type[E], handler: None = None, **options: Unpack[RouteOptions]
    ) -> Subscriber[E]: ...
    @overload
    def subscribe(
        self, target: str, handler: None = None, **options: Unpack[RouteOptions]
    ) -> Callable[[F], F]: ...
    @overload
    def subscribe(
        self, target: type[E], handler: Callable[[E], object], **options: Unpack[RouteOptions]
    ) -> Route: ...
    @overload
    def subscribe(
        self, target: type, handler: Callable[[Message], object], **options: Unpack[RouteOptions]
    ) -> Route: ...
    @overload
    def subscribe(
        self, target: type[E], handler: Callable[[list[E]], object], **o: Unpack[RouteOptions]
    ) -> Route: ...
    @overload
    def subscribe(
        self, target: str, handler: UserHandler, **options: Unpack[RouteOptions]
    ) -> Route: ...
    def subscribe(
        self,
        target: type | str,
        handler: UserHandler | None = None,
        **options: Unpack[RouteOptions],
    ) -> Route | Callable[[F], F] | Subscriber[Any]:
        """Call ``handler`` for every event of type ``target``, or on topic ``target``.

        Topics may be patterns: ``user.*`` matches one token, ``user.>`` one or more. Used
        without ``handler`` it is a decorator returning the function unchanged; given an event
        type, it takes handlers of that event, of its Message, or of ``list[Event]`` (batches of
        up to ``batch_size``). The options are :class:`~tidings.route.RouteOptions`.
        """
        if handler is None:

            def decorate(func: F) -> F:
                self.subscribe(target, func, **options)
                return func

            return decorate
        route = new_route(
            target,
            handler,
            self.registry,
            self.codec,
            bus_middleware=self.middleware,
            handler_timeout=self.handler_timeout,
            **options,
        )
        route.build(self.registry, self.clock, self._replier)
        route.observer = self._observer
        self._routes.add(route)
        if self._running and not self.inline:
            self._consumers.start(route, restart=self.restart, max_size=self.max_message_size)
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
        self._consumers.retire(route, shared=self._routes.shares_group(route))

    def _subscribe_inbox(self, topic: str, receive: Callable[[Message], None]) -> None:
        self.subscribe(topic, receive, group=topic, name=topic)

    async def _send(self, topic: str, message: Message) -> None:
        await self.publish(message, topic=topic)

    async def _republish(self, topic: str, message: Message) -> None:
        if self._local is not None and not self._running:  # nothing consumes: run them here
            await self._direct.replay(topic, message)
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
        self._observe()
        self._running = True
        if not self.inline:  # inline publishing never reaches the transport
            for route in self._routes.all:
                self._consumers.start(route, restart=self.restart, max_size=self.max_message_size)

    def _observe(self) -> None:
        """Look for the application's OpenTelemetry set-up: at start, or at a first delivery."""
        self._looked = True
        observer = self._observer = configured(self._system, self._telemetry)
        self._sender.observer = self._direct.observer = self._consumers.observer = observer
        for route in self._routes.all:
            route.observer = observer
        if observer is not None:
            observer.watch(self.health, self.transport)

    def health(self) -> Health:
        """Every running consumer's state (see :mod:`tidings.health`), and failed ones."""
        return self._consumers.health(self._running)

    def outcomes(self, **options: Unpack[StreamOptions]) -> OutcomeStream:
        """Each message's final outcome as the consumers settle it: :mod:`.outcome_stream`."""
        return self._consumers.outcomes.open(**options)

    async def consumer_failed(self) -> RouteHealth:
        """Wait until a consumer gives up (its restart policy ran out); returns its health."""
        return await self._consumers.first_failure()

    async def drain(self) -> None:
        """Wait until every message published so far was handled (in process; a broker's
        handlers are not waited for) and every task the bus started is done."""
        await self._consumers.drain()

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
        self._closed = True
        await self._closing.close(self._shut_down, timeout)

    async def _shut_down(self, timeout: float | None, cut_short: asyncio.Event) -> None:
        try:
            if self._running:
                await self._consumers.stop(timeout, cut_short)
        finally:
            self._running = False
            self._consumers.outcomes.close()
            if self._observer is not None:
                self._observer.close()
            await self.transport.aclose()

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes.all
