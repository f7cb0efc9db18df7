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
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidings import context
from tidings._waiters import wake_one
from tidings.context import in_task
from tidings.deadletters import REPLAY_GROUP_HEADER, DeadLetterStore, store_failure
from tidings.errors import DecodeError, HandlerTimeout
from tidings.message import Message
from tidings.topics import is_pattern
from tidings.transports.base import Delivery, Subscription

if TYPE_CHECKING:
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
        now: Callable[[], float],
        prefetch: int,
    ) -> None:
        self.route = route
        self._subscription = subscription
        self._dead_letters = dead_letters
        self._now = now
        self._prefetch = max(prefetch, route.concurrency)
        self._buffer: deque[Delivery] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()
        self._room: asyncio.Future[None] | None = None
        self._fetching = True
        self._keys: dict[str, deque[Delivery]] | None = {} if route.ordered else None
        self._workers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Consume until the subscription ends; then finish what was fetched."""
        self._workers = workers = [
            asyncio.create_task(self._work(), name=f"tidings worker {self.route.name}")
            for _ in range(self.route.concurrency)
        ]
        buffer, idle = self._buffer, self._idle
        try:
            async for batch in self._subscription:
                buffer.extend(batch)
                if idle:
                    wake_one(idle)  # a worker that takes one wakes the next (as asyncio.Queue)
                while len(buffer) >= self._prefetch:
                    self._room = asyncio.get_running_loop().create_future()
                    await self._room
        finally:
            self._fetching = False
            while idle:
                wake_one(idle)
            await asyncio.gather(*workers, return_exceptions=True)  # aborted ones: cancelled

    async def stop(self, *, release_buffered: bool = False) -> None:
        """Stop fetching. What was fetched is still handled, or, with ``release_buffered``,
        given back to the transport (nacked) unless a handler already started on it."""
        await self._subscription.aclose()
        if release_buffered:
            await self._release_buffered()
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)  # a fetcher waiting for room sees the subscription end

    async def abort(self) -> None:
        """Stop now: give back what was fetched and cancel the handlers still running; the
        transport delivers all of it again (in process: it stays queued)."""
        await self.stop(release_buffered=True)
        for worker in self._workers:
            worker.cancel()

    async def _release_buffered(self) -> None:
        buffer = self._buffer
        while buffer:
            await buffer.popleft().nack(0.0)

    async def _work(self) -> None:
        buffer, idle, keys = self._buffer, self._idle, self._keys
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
                if buffer and idle:
                    wake_one(idle)
                self._made_room()
                await self._handle_batch(batch)
                continue
            delivery = buffer.popleft()
            if buffer and idle:
                wake_one(idle)  # more waiting: another worker can start on it meanwhile
            self._made_room()
            key = delivery.message.key
            if keys is None or key is None:
                await handle(delivery)
                continue
            if key in keys:
                keys[key].append(delivery)  # its holder runs it after the ones before it
                continue
            parked = keys[key] = deque()
            try:
                await handle(delivery)
                while parked:
                    await handle(parked.popleft())
            finally:
                del keys[key]
                for left in parked:  # only when cancelled: give them back
                    await left.nack(0.0)

    async def _handle(self, delivery: Delivery) -> None:
        """Handle, then ack, nack (to retry) or dead-letter."""
        message = delivery.message
        route = self.route
        in_task.set(message)  # context.handling(message), inlined: this runs per message
        try:
            if message.headers and not self._meant_for_us(message):
                await delivery.ack()
                return
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
        except Exception as error:
            delay = route.retry.next_delay(error, delivery.attempt)
            if delay is None:
                await self._dead_letter(delivery, message, error)
            else:
                await delivery.nack(delay)
        except asyncio.CancelledError:
            await delivery.nack(0.0)  # stopped mid-way: it must come again
            raise
        else:
            await delivery.ack()

    def _made_room(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    async def _handle_batch(self, deliveries: list[Delivery]) -> None:
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
            try:
                events.append(route.decode(message).data)
            except DecodeError as error:
                await self._dead_letter(delivery, message, error)
                continue
            ready.append(delivery)
        if not ready:
            return
        context.handling(ready[-1].message)
        try:
            async with asyncio.timeout(route.timeout):
                result = route.handler(events)
                if route.is_async:
                    await result  # type: ignore[misc]  # async: awaitable
        except Exception as error:
            if isinstance(error, TimeoutError) and route.timeout is not None:
                error = HandlerTimeout(route.name, route.timeout)
            for delivery in ready:
                delay = route.retry.next_delay(error, delivery.attempt)
                if delay is None:
                    await self._dead_letter(delivery, delivery.message, error)
                else:
                    await delivery.nack(delay)
        else:
            for delivery in ready:
                await delivery.ack()

    def _meant_for_us(self, message: Message) -> bool:
        """False for a replayed dead letter addressed to another group."""
        replay_for = message.headers.get(REPLAY_GROUP_HEADER)
        return replay_for is None or replay_for == self.route.group

    async def _dead_letter(self, delivery: Delivery, message: Message, error: Exception) -> None:
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
                failed_at=self._now(),
            )
        except Exception:
            _log.exception("could not dead-letter %s; it will be delivered again", message.id)
            await delivery.nack(route.retry.backoff(delivery.attempt))
            return
        await delivery.ack()


def _topic_of(delivery: Delivery, route: Route) -> str:
    """The concrete topic a delivery came from, for replays: transports that know it expose
    ``delivery.topic``; otherwise a pattern route's message came on its type's topic."""
    topic: str | None = getattr(delivery, "topic", None)
    if topic:
        return topic
    return route.topic if not is_pattern(route.topic) else delivery.message.type
