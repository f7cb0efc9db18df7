"""The one consume loop that serves every transport.

For each delivery of a subscription: decode it into the subscribed event type, run the handler
chain, ack on success. On failure the route's Retry policy decides: nack with the backoff delay
(the transport redelivers; brokers with native delays keep the wait), or, after the last attempt
or for input that can never succeed (DecodeError), write the message to the dead-letter store with
its reason and ack it. Nothing is dropped silently: a message whose dead-lettering fails is
nacked, so it comes again.

A fetcher reads batches from the subscription into a buffer of at most ``prefetch`` deliveries;
``concurrency`` worker Tasks take from it, so at most that many handlers run at once. Workers
``await`` handlers directly (as ``asyncio.Queue`` workers do), which costs no Task per message.
With ``ordered``, messages that share a key run one after another in delivery order, while
different keys run in parallel: a worker that finds a message's key busy parks the message with
the worker that holds the key, which runs it next.

Supervision: an unexpected error in the fetcher (a broker that went away) or in a worker (an ack
that failed) is logged once, with the route, and that part starts again after a capped backoff
(the ``restart`` policy); the message in hand is given back, never lost. Once the policy runs
out the consumer is ``failed``: it stops fetching and reports it. A watchdog cancels a handler
that runs past the route's timeout; its message fails with HandlerTimeout and is retried or
dead-lettered like any failure.

What a handler raises decides what happens to its message: an Exception, or a BaseException of
its own (CancelledError it raised itself included), is a failure of that message; a
KeyboardInterrupt or SystemExit gives the message back and goes on up to stop the process; a
cancellation of the worker from outside (``abort``) gives the message back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidings import context
from tidings._waiters import wake_one
from tidings.context import in_task
from tidings.deadletters import REPLAY_GROUP_HEADER, DeadLetterStore, store_failure
from tidings.errors import STOPPING_PROCESS, DecodeError, HandlerTimeout, MessageTooLarge
from tidings.health import ConsumerState, RouteHealth
from tidings.message import Message
from tidings.middleware.retry import Retry
from tidings.topics import is_pattern
from tidings.transports.base import Delivery, Subscription

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
        *,
        prefetch: int,
        timeout: float | None,
        restart: Retry,
        on_failed: Callable[[Consumer], None],
        max_size: int | None = None,
    ) -> None:
        self.route = route
        self._subscription = subscription
        self._dead_letters = dead_letters
        self._clock = clock
        self._prefetch = max(prefetch, route.concurrency)
        self._timeout = timeout
        self._restart = restart
        self._on_failed = on_failed
        self._max_size = max_size if max_size is not None else 1 << 62
        self._buffer: deque[Delivery] = deque()
        self._arrivals: deque[list[float]] = deque()
        """``[fetched at, deliveries of that batch still in the buffer]``, oldest first."""
        self._idle: deque[asyncio.Future[None]] = deque()
        self._room: asyncio.Future[None] | None = None
        self._fetching = True
        self._stopping = asyncio.Event()
        self._keys: dict[str, deque[Delivery]] | None = {} if route.ordered else None
        self._workers: list[asyncio.Task[None]] = []
        self._started = [0.0] * route.concurrency
        """Per worker: when its current handler call started (loop time), 0.0 when idle."""
        self._expired = [False] * route.concurrency
        """Per worker: the watchdog cancelled its handler call for running too long."""
        self._now = time.monotonic  # the event loop's clock
        self._failures = 0
        """Unexpected errors in a row, across the consumer's parts; progress resets it."""
        self.state: ConsumerState = "running"
        self.last_error: str | None = None
        self.restarts = 0

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until the subscription ends (or the consumer fails); then finish what was
        fetched."""
        self._workers = workers = [
            asyncio.create_task(self._work(slot), name=f"tidings worker {self.route.name}")
            for slot in range(self.route.concurrency)
        ]
        watchdog = None
        if self._timeout is not None:
            watchdog = asyncio.create_task(self._watch(self._timeout))
        try:
            await self._fetch()
        finally:
            self._fetching = False
            while self._idle:
                wake_one(self._idle)
            await asyncio.wait(workers)  # they finish what was fetched (aborted: give it back)
            if watchdog is not None:
                watchdog.cancel()
            if self.state != "failed":
                self.state = "stopped"

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
                if not self._fetching or not await self._recover("fetching", error):
                    return
                batches = aiter(self._subscription)
                continue
            if self._failures:
                self._recovered()
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
        given back to the transport (nacked) unless a handler already started on it."""
        self._fetching = False
        self._stopping.set()
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
        buffer = self._buffer
        self._took(len(buffer))
        while buffer:
            await buffer.popleft().nack(0.0)

    # -- supervision -------------------------------------------------------------------------

    async def _recover(self, part: str, error: Exception) -> bool:
        """Log ``error`` of ``part`` and wait out the backoff; False once the restart policy
        gives up (the consumer has failed then)."""
        self._failures += 1
        self.restarts += 1
        self.last_error = f"{type(error).__name__}: {error}"
        delay = self._restart.next_delay(error, self._failures)
        name = self.route.name
        if delay is None:
            self.state = "failed"
            _log.error(
                "%s: %s failed %d time(s) in a row; the consumer gives up",
                name,
                part,
                self._failures,
                exc_info=error,
            )
            self._fetching = False
            self._made_room()
            self._on_failed(self)
            return False
        if self._failures == 1:
            _log.warning("%s: %s failed; starting it again", name, part, exc_info=error)
        else:
            _log.debug("%s: %s failed again (%d in a row): %s", name, part, self._failures, error)
        self.state = "restarting"
        await self._pause(delay)
        return self._fetching

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if the consumer is stopped meanwhile."""
        sleeping = asyncio.ensure_future(self._clock.sleep(delay))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()

    def _recovered(self) -> None:
        if self.state == "restarting":
            _log.info("%s: running again after %d failure(s)", self.route.name, self._failures)
            self.state = "running"
        self._failures = 0

    async def _watch(self, limit: float) -> None:
        """Cancel handler calls that run longer than ``limit`` seconds."""
        now = self._now
        started, expired, workers = self._started, self._expired, self._workers
        while True:
            moment = now()
            wake_at = moment + limit
            for slot, since in enumerate(started):
                if not since or expired[slot]:
                    continue
                deadline = since + limit
                if deadline <= moment:
                    expired[slot] = True
                    workers[slot].cancel()
                elif deadline < wake_at:
                    wake_at = deadline
            await asyncio.sleep(wake_at - moment)

    # -- working -----------------------------------------------------------------------------

    async def _work(self, slot: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        while True:
            try:
                await self._serve(slot)
                return
            except asyncio.CancelledError:
                if task.cancelling():
                    raise
                # the watchdog's cancel reached the worker after its handler had finished
            except Exception as error:  # settling failed: the transport redelivers that one
                if not await self._recover("a worker", error):
                    return

    async def _serve(self, slot: int) -> None:
        buffer, idle, keys, arrivals = self._buffer, self._idle, self._keys, self._arrivals
        handle = self._handle
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
                for delivery in batch:
                    _start(delivery)
                if buffer and idle:
                    wake_one(idle)
                await self._handle_batch(batch, slot)
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
            if start is not None:
                start()
            if keys is None or key is None:
                await handle(delivery, slot)
                continue
            parked = keys[key] = deque()
            try:
                await handle(delivery, slot)
                while parked:
                    delivery = parked.popleft()
                    _start(delivery)
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

    async def _handle(self, delivery: Delivery, slot: int) -> None:
        """Handle, then ack, nack (to retry) or dead-letter."""
        message = delivery.message
        route = self.route
        in_task.set(message)  # context.handling(message), inlined: this runs per message
        if message.headers and not self._meant_for_us(message):
            await delivery.ack()
            return
        if type(message.data) is bytes and len(message.data) > self._max_size:
            await self._dead_letter(delivery, message, self._too_large(message))
            return
        self._started[slot] = self._now()
        try:
            if route.plain:  # no middleware: decode here and call the handler directly
                data = message.data
                expected = route.event_type
                if type(data) is not expected:
                    if expected is not None:
                        data = route.codec.convert(data, expected)
                    elif not route.accepts(data):
                        data = route.decode(message).data
                if route.is_async:
                    await route.handler(data)  # type: ignore[misc]  # async: awaitable
                else:
                    route.handler(data)
            else:
                await route.queued_handler(message)
        except asyncio.CancelledError as error:
            if self._stopped_from_outside(slot):
                self._finished(slot)
                await delivery.nack(0.0)  # stopped mid-way: it must come again
                raise
            failure: BaseException = self._cancel_reason(slot, error)
        except STOPPING_PROCESS:
            self._finished(slot)
            await delivery.nack(0.0)
            raise
        except BaseException as error:  # the handler's own BaseExceptions fail the message too
            failure = error
            self._finished(slot)
        else:
            self._started[slot] = 0.0  # self._finished(slot), inlined for the common case
            if self._expired[slot]:
                self._finished(slot)
            if self._failures:
                self._recovered()
            await delivery.ack()
            return
        await self._fail(delivery, failure, slot)

    def _stopped_from_outside(self, slot: int) -> bool:
        """Whether a CancelledError out of a handler is a stop of the worker (rather than the
        watchdog's timeout or the handler's own doing)."""
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling() > self._expired[slot]

    def _cancel_reason(self, slot: int, error: asyncio.CancelledError) -> BaseException:
        """The failure a handler's CancelledError stands for: its timeout, or itself."""
        timed_out = self._expired[slot]
        self._finished(slot)
        return HandlerTimeout(self.route.name, self._timeout or 0.0) if timed_out else error

    def _finished(self, slot: int) -> None:
        """The worker in ``slot`` is done with its handler call: the watchdog lets it be."""
        self._started[slot] = 0.0
        if self._expired[slot]:
            self._expired[slot] = False
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()

    async def _fail(self, delivery: Delivery, error: BaseException, slot: int = -1) -> None:
        delay = self.route.retry.next_delay(error, delivery.attempt)
        if delay is None:
            await self._dead_letter(delivery, delivery.message, error)
        elif slot >= 0 and self._keys is not None and delivery.message.key is not None:
            # Ordered: the worker keeps the key and tries again here after the backoff, so no
            # later message of the key overtakes this one (a nack would let them).
            try:
                await self._clock.sleep(delay)
            except asyncio.CancelledError:
                await delivery.nack(0.0)
                raise
            await self._handle(_Again(delivery), slot)
        else:
            await delivery.nack(delay)

    async def _handle_batch(self, deliveries: list[Delivery], slot: int) -> None:
        """One call for the batch: ack all on success; on failure each message is retried or
        dead-lettered on its own count. Undecodable messages are dead-lettered, not passed."""
        route = self.route
        ready: list[Delivery] = []
        events: list[Any] = []
        for delivery in deliveries:
            message = delivery.message
            if message.headers and not self._meant_for_us(message):
                await delivery.ack()
                continue
            if type(message.data) is bytes and len(message.data) > self._max_size:
                await self._dead_letter(delivery, message, self._too_large(message))
                continue
            try:
                events.append(route.decode(message).data)
            except DecodeError as error:
                await self._dead_letter(delivery, message, error)
                continue
            ready.append(delivery)
        if not ready:
            return
        context.handling(ready[-1].message)
        self._started[slot] = self._now()
        try:
            result = route.handler(events)
            if route.is_async:
                await result  # type: ignore[misc]  # async: awaitable
        except asyncio.CancelledError as error:
            if self._stopped_from_outside(slot):
                self._finished(slot)
                for delivery in ready:
                    await delivery.nack(0.0)
                raise
            failure: BaseException = self._cancel_reason(slot, error)
        except STOPPING_PROCESS:
            self._finished(slot)
            for delivery in ready:
                await delivery.nack(0.0)
            raise
        except BaseException as error:
            failure = error
            self._finished(slot)
        else:
            self._finished(slot)
            for delivery in ready:
                await delivery.ack()
            return
        for delivery in ready:
            await self._fail(delivery, failure)

    def _too_large(self, message: Message) -> MessageTooLarge:
        return MessageTooLarge(len(message.data), self._max_size)

    def _made_room(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def _meant_for_us(self, message: Message) -> bool:
        """False for a replayed dead letter addressed to another group."""
        replay_for = message.headers.get(REPLAY_GROUP_HEADER)
        return replay_for is None or replay_for == self.route.group

    async def _dead_letter(
        self, delivery: Delivery, message: Message, error: BaseException
    ) -> None:
        route = self.route
        try:
            await store_failure(
                self._dead_letters,
                message,
                topic=_topic_of(delivery, route),
                group=route.group,
                codec=route.codec,
                error=error,
                attempts=delivery.attempt,
                failed_at=self._clock.now(),
            )
        except Exception:
            _log.exception("could not dead-letter %s; it will be delivered again", message.id)
            await delivery.nack(route.retry.backoff(delivery.attempt))
            return
        await delivery.ack()

    # -- health ------------------------------------------------------------------------------

    def health(self) -> RouteHealth:
        route = self.route
        now = self._now()
        busy = [since for since in self._started if since]
        held = [*busy, self._arrivals[0][0]] if self._arrivals else busy
        parked = sum(len(waiting) for waiting in (self._keys or {}).values())
        return RouteHealth(
            route=route.name,
            topic=route.topic,
            group=route.group,
            state=self.state,
            last_error=self.last_error,
            restarts=self.restarts,
            in_flight=len(self._buffer) + len(busy) + parked,
            oldest_age=now - min(held) if held else None,
        )


def _start(delivery: Delivery) -> None:
    """Tell a delivery that a handler takes it now, where the transport wants to know: in process
    it then stops counting against its channel's capacity."""
    start = getattr(delivery, "start", None)
    if start is not None:
        start()


class _Again:
    """A delivery tried again in place: the same message, one attempt later."""

    __slots__ = ("_delivery", "attempt", "message")

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery
        self.message = delivery.message
        self.attempt = delivery.attempt + 1

    @property
    def topic(self) -> str | None:
        return getattr(self._delivery, "topic", None)

    async def ack(self) -> None:
        await self._delivery.ack()

    async def nack(self, delay: float = 0.0) -> None:
        await self._delivery.nack(delay)


def _topic_of(delivery: Delivery, route: Route) -> str:
    """The concrete topic a delivery came from, for replays: transports that know it expose
    ``delivery.topic``; otherwise a pattern route's message came on its type's topic."""
    topic: str | None = getattr(delivery, "topic", None)
    if topic:
        return topic
    return route.topic if not is_pattern(route.topic) else delivery.message.type
