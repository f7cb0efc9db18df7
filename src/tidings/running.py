"""The consumers of one bus: one per route while it runs, and how they stop.

Stopping is graceful first: in process every accepted message is handled (``drain``); on brokers
fetching stops, handlers in flight finish and are acked, what was fetched ahead is given back.
When that takes too long, or is cut short, or an in-process consumer has failed (its messages can
no longer drain), every handler is cancelled and its message given back; in process, where
nothing outlives the bus, what was not handled becomes a NotHandled dead letter: never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tidings.background import Background
from tidings.clock import Clock
from tidings.codec import Codec
from tidings.consumer import Consumer
from tidings.dead_letters import DeadLetterStore, store_failure
from tidings.errors import NotHandled
from tidings.health import Health, RouteHealth
from tidings.message import Message
from tidings.middleware.retry import Retry
from tidings.outcome_stream import Outcomes, failed
from tidings.route import Route
from tidings.telemetry import Observer
from tidings.topics import is_pattern
from tidings.transports.base import LocalTransport, Transport

__all__ = ["Closing", "Consumers"]


class Consumers:
    """Start, retire, watch and stop the consumers of one bus's routes."""

    def __init__(
        self,
        transport: Transport,
        local: LocalTransport | None,
        dead_letters: DeadLetterStore,
        codec: Codec,
        clock: Clock,
        background: Background,
    ) -> None:
        self._transport = transport
        self._local = local
        self._dead_letters = dead_letters
        self._codec = codec
        self._clock = clock
        self._background = background
        self.outcomes = Outcomes()
        """Where the consumers report final outcomes (``bus.outcomes()``)."""
        self._running: dict[Route, tuple[Consumer, asyncio.Task[None]]] = {}
        self._retiring: dict[Consumer, asyncio.Task[None]] = {}
        self._failed: list[Consumer] = []
        self._failure: asyncio.Event | None = None
        self.observer: Observer | None = None
        """Spans and metrics for the consumers started from now on."""

    def start(self, route: Route, *, restart: Retry, max_size: int | None) -> None:
        """Subscribe ``route`` and run its consumer in a Task."""
        # In process a batch costs nothing to hold (and counts against the channel's capacity);
        # brokers lease what they prefetch.
        prefetch = 1024 if self._local is not None else max(64, route.concurrency * 2)
        subscription = self._transport.subscribe(route.topic, group=route.group, prefetch=prefetch)
        consumer = Consumer(
            route,
            subscription,
            self._dead_letters,
            self._clock,
            self.outcomes,
            prefetch=prefetch,
            timeout=route.queued_timeout,
            restart=restart,
            max_size=max_size,
            on_failed=self._consumer_failed,
            observer=self.observer,
        )
        task = asyncio.create_task(consumer.run(), name=f"tidings consumer {route.name}")
        self._running[route] = (consumer, task)

    def retire(self, route: Route, *, shared: bool) -> None:
        """Stop consuming for ``route`` without waiting. What was queued for it is still handled
        in process unless another route of its group (``shared``) takes it over; a broker keeps
        it for the group's next subscriber."""
        running = self._running.pop(route, None)
        if running is None:
            return
        consumer, task = running
        self._background.add(task)
        self._retiring[consumer] = task
        task.add_done_callback(lambda _: self._retiring.pop(consumer, None))
        if self._local is not None and not shared:
            self._local.retire(route.topic, route.group)  # its consumer ends once it is empty
        else:
            self._background.add(asyncio.ensure_future(consumer.stop(release_buffered=True)))

    def _consumer_failed(self, consumer: Consumer) -> None:
        self._failed.append(consumer)
        if self._failure is not None:
            self._failure.set()

    def health(self, running: bool) -> Health:
        consumers = [consumer for consumer, _ in self._running.values()]
        consumers += [c for c in self._failed if c not in consumers]
        return Health(running, tuple(c.health() for c in consumers))

    def _failures(self) -> asyncio.Event:
        if self._failure is None:
            self._failure = asyncio.Event()
            if self._failed:
                self._failure.set()
        return self._failure

    async def first_failure(self) -> RouteHealth:
        await self._failures().wait()
        return self._failed[0].health()

    async def drain(self) -> None:
        """Wait until every message accepted so far was handled (in process) and every
        background task is done."""
        if self._local is not None:
            await self._local.join()
        await self._background.wait()

    async def stop(self, timeout: float | None, cut_short: asyncio.Event) -> None:
        """Stop gracefully within ``timeout``, or at once when ``cut_short`` is set or an
        in-process consumer fails (see the module docstring)."""
        graceful = asyncio.ensure_future(self._drain_and_stop())
        stops = [asyncio.ensure_future(cut_short.wait())]
        if self._local is not None:
            stops.append(asyncio.ensure_future(self._failures().wait()))
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
            await self._abort()
        self._running.clear()

    async def _drain_and_stop(self) -> None:
        await self.drain()
        for consumer, _ in self._running.values():
            await consumer.stop(release_buffered=self._local is None)
        tasks = [task for _, task in self._running.values()]
        if tasks:
            await asyncio.wait(tasks)
        await self.drain()  # what unsubscribed routes still had

    async def _abort(self) -> None:
        running = {**dict(self._running.values()), **self._retiring}
        for consumer in running:
            await consumer.abort()
        if running:
            await asyncio.wait(running.values())
        await self._background.cancel()
        if self._local is not None:
            routes = {(c.route.topic, c.route.group): c.route.name for c in running}
            await self._keep_unhandled(self._local.take_unhandled(), routes)

    async def _keep_unhandled(
        self, held: list[tuple[str, str, list[Message]]], routes: dict[tuple[str, str], str]
    ) -> None:
        """Store what was not handled as NotHandled dead letters and report them; ``routes``
        names the route of each (topic, group)."""
        reason = NotHandled("the bus closed before this message was handled")
        for topic, group, messages in held:
            route = routes.get((topic, group), group)
            for message in messages:
                letter = await store_failure(
                    self._dead_letters,
                    message,
                    topic=topic if not is_pattern(topic) else message.type,
                    group=group,
                    codec=self._codec,
                    error=reason,
                    attempts=0,
                    failed_at=self._clock.now(),
                )
                if self.outcomes.readers:
                    self.outcomes.report(failed(route, message, letter, 0.0, undecodable=False))


class Closing:
    """One bus's closing: the first ``aclose`` runs it; later ones wait for it and, when their
    own timeout passes first, cut it short (the graceful part ends, the rest still runs)."""

    __slots__ = ("_cut_short", "_done")

    def __init__(self) -> None:
        self._done: asyncio.Future[None] | None = None
        self._cut_short = asyncio.Event()

    async def close(
        self,
        shut_down: Callable[[float | None, asyncio.Event], Awaitable[None]],
        timeout: float | None,
    ) -> None:
        """Run ``shut_down`` the first time; later calls wait for it. From a task that is being
        cancelled (Ctrl-C under ``asyncio.run``) it waits for nothing, as with ``timeout=0``."""
        caller = asyncio.current_task()
        if caller is not None and caller.cancelling():
            timeout = 0.0
        if self._done is not None:  # closing already: wait for it, cut short at our timeout
            await self._wait(timeout)
            return
        self._done = asyncio.get_running_loop().create_future()
        try:
            await shut_down(timeout, self._cut_short)
        finally:
            self._done.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        assert self._done is not None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._done)
        except TimeoutError:
            self._cut_short.set()
            await asyncio.shield(self._done)
