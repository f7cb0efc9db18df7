"""The one consume loop that serves every transport.

Each delivery is handled by :mod:`tidings.handling` (handler, then ack, retry or dead letter;
nothing is dropped silently); the consumer's parts are kept alive by :mod:`tidings.supervision`.

A fetcher reads batches from the subscription into a buffer of at most ``prefetch`` deliveries;
``concurrency`` worker Tasks take from it, so at most that many handlers run at once. Workers
``await`` handlers directly (as ``asyncio.Queue`` workers do), which costs no Task per message.
With ``ordered``, messages that share a key run one after another in delivery order, while
different keys run in parallel: a worker that finds a message's key busy parks the message with
the worker that holds the key, which runs it next.

Supervision: an unexpected error in the fetcher (a broker that went away) or in a worker (an ack
that failed) restarts that part after a capped backoff; the message in hand is given back, never
lost. Once the restart policy runs out the consumer is ``failed``: it stops fetching.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from tidings._waiters import wake_one
from tidings.context import route_in_task
from tidings.dead_letters import DeadLetterStore
from tidings.handling import Handling
from tidings.health import RouteHealth
from tidings.middleware.retry import Retry
from tidings.outcome_stream import Outcomes
from tidings.supervision import Supervision
from tidings.telemetry import Observer
from tidings.transports.base import Delivery, OwnsPartitions, Subscription

if TYPE_CHECKING:
    from tidings.clock import Clock
    from tidings.route import Route

__all__ = ["Consumer"]

_log = logging.getLogger("tidings.consumer")


class Consumer:
    """Runs one route's handler over one transport subscription until it ends or is stopped."""

    def __init__(
        self,
        route: Route,
        subscription: Subscription,
        dead_letters: DeadLetterStore,
        clock: Clock,
        outcomes: Outcomes,
        *,
        prefetch: int,
        timeout: float | None,
        restart: Retry,
        on_failed: Callable[[Consumer], None],
        max_size: int | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.route = route
        self._subscription = subscription
        self._prefetch = max(prefetch, route.concurrency)
        self._timeout = timeout
        self._on_failed = on_failed
        self._buffer: deque[Delivery] = deque()
        self._arrivals: deque[list[float]] = deque()
        """``[fetched at, deliveries of that batch still in the buffer]``, oldest first."""
        self._idle: deque[asyncio.Future[None]] = deque()
        self._room: asyncio.Future[None] | None = None
        self._fetching = True
        self._keys: dict[str, deque[Delivery]] | None = {} if route.ordered else None
        self._workers: list[asyncio.Task[None]] = []
        self._now = time.monotonic  # the event loop's clock
        self.supervision = Supervision(route.name, restart, clock, self._gave_up)
        self._handling = Handling(
            route,
            dead_letters,
            clock,
            self.supervision,
            outcomes,
            timeout=timeout,
            max_size=max_size,
            observer=observer,
        )

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until the subscription ends (or the consumer fails); then finish what was
        fetched."""
        self._workers = self._handling.workers = workers = [
            asyncio.create_task(self._work(slot), name=f"tidings worker {self.route.name}")
            for slot in range(self.route.concurrency)
        ]
        watchdog = None
        if self._timeout is not None:
            watchdog = asyncio.create_task(self._handling.watch(self._timeout))
        try:
            await self._fetch()
        finally:
            self._fetching = False
            while self._idle:
                wake_one(self._idle)
            await asyncio.wait(workers)  # they finish what was fetched (aborted: give it back)
            if watchdog is not None:
                watchdog.cancel()
            if self.supervision.state != "failed":
                self.supervision.state = "stopped"

    async def _fetch(self) -> None:
        buffer, idle, arrivals = self._buffer, self._idle, self._arrivals
        now = self._now
        batches = aiter(self._subscription)
        while True:
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                return
            except Exception as error:
                if not self._fetching or not await self.supervision.recover("fetching", error):
                    return
                batches = aiter(self._subscription)
                continue
            if self.supervision.failures:
                self.supervision.recovered()
            if not batch:
                continue
            buffer.extend(batch)
            arrivals.append([now(), len(batch)])
            if idle:
                wake_one(idle)  # a worker that takes one wakes the next (as asyncio.Queue)
            while len(buffer) >= self._prefetch and self._fetching:
                self._room = asyncio.get_running_loop().create_future()
                await self._room

    async def stop(self, *, release_buffered: bool = False) -> None:
        """Stop fetching. What was fetched is still handled, or, with ``release_buffered``,
        given back to the transport (nacked) unless a handler already started on it (a message
        waiting for its key counts as not started)."""
        self._fetching = False
        self.supervision.stopping.set()
        await self._subscription.aclose()
        if release_buffered:
            await self._release_buffered()
        self._made_room()  # a fetcher waiting for room sees the subscription end

    async def abort(self) -> None:
        """Stop now: give back what was fetched and cancel the handlers still running; the
        transport delivers all of it again (in process: it stays queued)."""
        await self.stop(release_buffered=True)
        for worker in self._workers:
            worker.cancel()

    async def _release_buffered(self) -> None:
        """Give back what was fetched and what waits for its key's running message (its holder
        then finishes only that one)."""
        for parked in (self._keys or {}).values():  # first: they came before the buffered
            while parked:
                await parked.popleft().nack(0.0)
        buffer = self._buffer
        self._took(len(buffer))
        while buffer:
            await buffer.popleft().nack(0.0)

    # -- supervision -------------------------------------------------------------------------

    def _gave_up(self) -> None:
        self._fetching = False
        self._made_room()
        self._on_failed(self)

    # -- working -----------------------------------------------------------------------------

    async def _work(self, slot: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        route_in_task.set(self.route)  # this Task handles only this route (tidings.current())
        while True:
            try:
                await self._serve(slot)
                return
            except asyncio.CancelledError:
                if task.cancelling():
                    raise
                # the watchdog's cancel reached the worker after its handler had finished
            except Exception as error:  # settling failed: the transport redelivers that one
                if not await self.supervision.recover("a worker", error):
                    return

    async def _serve(self, slot: int) -> None:
        buffer, idle, keys, arrivals = self._buffer, self._idle, self._keys, self._arrivals
        handle = self._handling.handle
        batch_size = self.route.batch_size if self.route.batch else 0
        while True:
            if not buffer:
                if not self._fetching:
                    return
                waiter = asyncio.get_running_loop().create_future()
                idle.append(waiter)
                await waiter
                continue
            if batch_size:
                batch = [buffer.popleft() for _ in range(min(batch_size, len(buffer)))]
                self._took(len(batch))
                batch = [delivery for delivery in batch if _start(delivery)]
                if buffer and idle:
                    wake_one(idle)
                if batch:
                    await self._handling.handle_batch(batch, slot)
                continue
            delivery = buffer.popleft()
            head = arrivals[0]  # self._took(1), inlined: this runs per message
            head[1] -= 1
            if not head[1]:
                arrivals.popleft()
            if self._room is not None:
                self._made_room()
            if buffer and idle:
                wake_one(idle)  # more waiting: another worker can start on it meanwhile
            key = delivery.message.key
            if keys is not None and key is not None and key in keys:
                keys[key].append(delivery)  # its holder runs it after the ones before it
                continue  # still waiting: it keeps counting against the capacity
            start = getattr(delivery, "start", None)  # _start(delivery), inlined: per message
            if start is not None and start() is False:
                continue
            if keys is None or key is None:
                await handle(delivery, slot)
                continue
            parked = keys[key] = deque()
            try:
                await handle(delivery, slot)
                while parked:
                    delivery = parked.popleft()
                    if _start(delivery):
                        await handle(delivery, slot)
            finally:
                del keys[key]
                for left in parked:  # only when stopped mid-way: give them back
                    await left.nack(0.0)

    def _took(self, count: int) -> None:
        """``count`` deliveries left the buffer (started, or given back)."""
        arrivals = self._arrivals
        while count and arrivals:
            head = arrivals[0]
            used = min(count, int(head[1]))
            head[1] -= used
            count -= used
            if not head[1]:
                arrivals.popleft()
        self._made_room()

    def _made_room(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    # -- health ------------------------------------------------------------------------------

    def health(self) -> RouteHealth:
        route = self.route
        now = self._now()
        busy = [since for since in self._handling.started if since]
        held = [*busy, self._arrivals[0][0]] if self._arrivals else busy
        parked = sum(len(waiting) for waiting in (self._keys or {}).values())
        return RouteHealth(
            route=route.name,
            topic=route.topic,
            group=route.group,
            state=self.supervision.state,
            last_error=self.supervision.last_error,
            restarts=self.supervision.restarts,
            in_flight=len(self._buffer) + len(busy) + parked,
            oldest_age=now - min(held) if held else None,
            partitions=_partitions(self._subscription),
        )


def _partitions(subscription: Subscription) -> tuple[int, ...] | None:
    if isinstance(subscription, OwnsPartitions):
        return tuple(sorted(subscription.partitions()))
    return None


def _start(delivery: Delivery) -> bool:
    """Tell a delivery that a handler takes it now, where the transport wants to know: in process
    it then stops counting against its channel's capacity. False when the transport took it back
    before (a Kafka partition moved to another member): it is skipped, its next owner has it."""
    start = getattr(delivery, "start", None)
    return start is None or start() is not False
