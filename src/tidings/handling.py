"""What happens to one delivery (or one batch): call the handler, then ack, retry or dead-letter.

A handler's outcome decides: returning acks; an Exception, or a BaseException of its own
(CancelledError it raised itself included), is a failure that the route's Retry policy turns into
a nack with a backoff delay, an in-place retry (ordered routes keep the key meanwhile), or, after
the last attempt or for input that can never succeed (DecodeError, MessageTooLarge), a dead
letter with its reason, then an ack; KeyboardInterrupt and SystemExit give the message back and
go on up; a cancellation of the worker from outside gives the message back. A dead letter that
cannot be written is nacked: it comes again, never dropped.

The watchdog cancels a handler call that runs past the route's timeout; the call fails with
HandlerTimeout, like any failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tidings.context import in_task
from tidings.dead_letters import REPLAY_GROUP_HEADER, DeadLetterStore, store_failure
from tidings.errors import STOPPING_PROCESS, DecodeError, HandlerTimeout, MessageTooLarge
from tidings.message import Message
from tidings.outcome_stream import Handled, Outcomes, failed
from tidings.supervision import Supervision
from tidings.telemetry import Observer
from tidings.telemetry.observer import final_outcome
from tidings.topics import is_pattern
from tidings.transports.base import Delivery

if TYPE_CHECKING:
    from tidings.clock import Clock
    from tidings.route import Route

__all__ = ["Handling"]

_log = logging.getLogger("tidings.consumer")


class Handling:
    """Handles the deliveries of one route for its consumer's workers; the worker in ``slot``
    runs one call at a time, timed in ``started[slot]``."""

    def __init__(
        self,
        route: Route,
        dead_letters: DeadLetterStore,
        clock: Clock,
        supervision: Supervision,
        outcomes: Outcomes,
        *,
        timeout: float | None,
        max_size: int | None,
        observer: Observer | None = None,
    ) -> None:
        self.route = route
        self._outcomes = outcomes
        self._dead_letters = dead_letters
        self._clock = clock
        self._supervision = supervision
        self._timeout = timeout
        self._max_size = max_size if max_size is not None else 1 << 62
        self._ordered = route.ordered
        self.workers: list[asyncio.Task[None]] = []
        """The consumer's worker Tasks, by slot: the watchdog cancels an overdue one's call."""
        self.started = [0.0] * route.concurrency
        """Per worker: when its current handler call started (loop time), 0.0 when idle."""
        self._expired = [False] * route.concurrency
        """Per worker: the watchdog cancelled its handler call for running too long."""
        self._now = time.monotonic  # the event loop's clock
        self._observer = observer
        self.handle: Callable[[Delivery, int], Awaitable[None]] = (
            self._handle if observer is None else self._observed
        )
        """Handle one delivery in a worker's ``slot``; observed (spans, metrics) if configured."""
        self.handle_batch: Callable[[list[Delivery], int], Awaitable[None]] = (
            self._handle_batch if observer is None else self._observed_batch
        )

    async def _observed(self, delivery: Delivery, slot: int) -> None:
        assert self._observer is not None
        topic = _topic_of(delivery, self.route)
        partition = getattr(delivery, "partition", None)
        with self._observer.processing(
            self.route.group, topic, [delivery], delivery.attempt, partition
        ):
            await self._handle(delivery, slot)

    async def _observed_batch(self, deliveries: list[Delivery], slot: int) -> None:
        assert self._observer is not None
        topic = _topic_of(deliveries[0], self.route)
        attempt = min(delivery.attempt for delivery in deliveries)
        with self._observer.processing(self.route.group, topic, deliveries, attempt):
            await self._handle_batch(deliveries, slot)

    def _outcome(self, delivery: Delivery, outcome: str, error: BaseException | None) -> None:
        if self._observer is not None:
            topic = _topic_of(delivery, self.route)
            self._observer.outcome(self.route.group, topic, outcome, error)

    async def _handle(self, delivery: Delivery, slot: int) -> None:
        """Handle, then ack, nack (to retry) or dead-letter."""
        message = delivery.message
        route = self.route
        in_task.set(delivery)  # what this Task handles now (see tidings.context)
        if message.headers and not self._meant_for_us(message):
            await delivery.ack()
            return
        if type(message.data) is bytes and len(message.data) > self._max_size:
            await self._dead_letter(delivery, message, self._too_large(message))
            return
        self.started[slot] = began = self._now()
        try:
            if route.plain:  # no middleware: decode here and call the handler directly
                data = message.data
                if type(data) is not route.event_type:
                    data = route.event_of(message)
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
            self.started[slot] = 0.0  # self._finished(slot), inlined for the common case
            if self._expired[slot]:
                self._finished(slot)
            if self._supervision.failures:
                self._supervision.recovered()
            if self._observer is not None:
                self._outcome(delivery, "ok", None)
            ack_now = getattr(delivery, "ack_now", None)  # in process: a plain call
            if ack_now is not None:
                ack_now()
            else:
                await delivery.ack()
            if self._outcomes.readers:
                self._handled(delivery, began)
            return
        await self._fail(delivery, failure, began, slot)

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
        self.started[slot] = 0.0
        if self._expired[slot]:
            self._expired[slot] = False
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()

    async def _fail(
        self, delivery: Delivery, error: BaseException, began: float, slot: int = -1
    ) -> None:
        delay = self.route.retry.next_delay(error, delivery.attempt)
        if delay is None:
            await self._dead_letter(delivery, delivery.message, error, began)
            return
        if self._observer is not None:
            self._outcome(delivery, "retried", error)
        if slot >= 0 and self._ordered and delivery.message.key is not None:
            # Ordered: the worker keeps the key and tries again here after the backoff, so no
            # later message of the key overtakes this one (a nack would let them).
            try:
                await self._clock.sleep(delay)
            except asyncio.CancelledError:
                await delivery.nack(0.0)
                raise
            await self.handle(_Again(delivery), slot)
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
                events.append(route.event_of(message))
            except DecodeError as error:
                await self._dead_letter(delivery, message, error)
                continue
            ready.append(delivery)
        if not ready:
            return
        in_task.set(ready[-1])
        self.started[slot] = began = self._now()
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
                if self._observer is not None:
                    self._outcome(delivery, "ok", None)
                await delivery.ack()
                if self._outcomes.readers:
                    self._handled(delivery, began)
            return
        for delivery in ready:
            await self._fail(delivery, failure, began)

    def _too_large(self, message: Message) -> MessageTooLarge:
        return MessageTooLarge(len(message.data), self._max_size)

    def _meant_for_us(self, message: Message) -> bool:
        """False for a replayed dead letter addressed to another group."""
        replay_for = message.headers.get(REPLAY_GROUP_HEADER)
        return replay_for is None or replay_for == self.route.group

    async def _dead_letter(
        self,
        delivery: Delivery,
        message: Message,
        error: BaseException,
        began: float | None = None,
    ) -> None:
        """Store ``message`` as a dead letter, then ack; ``began``: when its last attempt
        started (None: no handler was called)."""
        route = self.route
        if began is None:
            began = self._now()
        outcome = final_outcome(error)
        if self._observer is not None:
            self._outcome(delivery, outcome, error)
        try:
            letter = await store_failure(
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
        if self._outcomes.readers:
            duration = self._now() - began
            undecodable = outcome == "undecodable"
            report = failed(route.name, message, letter, duration, undecodable=undecodable)
            self._outcomes.report(report)

    def _handled(self, delivery: Delivery, began: float) -> None:
        """Report ``delivery`` handled and acked, its last attempt having started at ``began``."""
        route = self.route
        topic = _topic_of(delivery, route)
        duration = self._now() - began
        self._outcomes.report(
            Handled(route.name, route.group, topic, delivery.message, delivery.attempt, duration)
        )

    async def watch(self, limit: float) -> None:
        """Cancel handler calls that run longer than ``limit`` seconds."""
        now = self._now
        started, expired, workers = self.started, self._expired, self.workers
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
