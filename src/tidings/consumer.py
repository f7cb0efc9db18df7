"""The one consume loop that serves every transport.

For each delivery of a subscription: decode it into the subscribed event type, run the handler
chain, ack on success. On failure the subscription's Retry policy decides: nack with the backoff
delay (the transport redelivers; brokers with native delays keep the wait), or, after the last
attempt or for input that can never succeed (DecodeError), write the message to the dead-letter
store with its reason and ack it. Nothing is dropped silently: a message whose dead-lettering fails
is nacked, so it comes again.

At most ``concurrency`` handlers run at once; handlers start eagerly and only those that suspend
cost a Task. With ``ordered`` messages that share a key run one after another, in delivery order,
while different keys run in parallel.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from tidings import _eager
from tidings.deadletters import REPLAY_GROUP_HEADER, DeadLetterStore, store_failure
from tidings.message import Message
from tidings.transports.base import Delivery, Subscription

if TYPE_CHECKING:
    from tidings.route import Route

__all__ = ["Consumer", "current_message"]

_log = logging.getLogger("tidings.consumer")

current_message: contextvars.ContextVar[Message | None] = contextvars.ContextVar(
    "tidings_current_message", default=None
)
"""The message whose handler is running: events published there carry its ids."""

_RETRYING = object()


class Consumer:
    """Runs one route's handler over one transport subscription until it ends or is stopped."""

    def __init__(
        self,
        route: Route,
        subscription: Subscription,
        dead_letters: DeadLetterStore,
        now: Callable[[], float],
        on_done: Callable[[Message, Route, BaseException | None], None] | None = None,
    ) -> None:
        self.route = route
        self._subscription = subscription
        self._dead_letters = dead_letters
        self._now = now
        self._on_done = on_done
        self._limit = route.concurrency
        self._in_flight = 0
        self._slot: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._keys: dict[str, deque[Delivery]] | None = {} if route.ordered else None
        self._handler = route.queued_handler
        self._retry = route.retry

    async def run(self) -> None:
        """Consume until the subscription ends; then wait for the handlers still running."""
        keys = self._keys
        try:
            async for batch in self._subscription:
                for delivery in batch:
                    if keys is not None and (key := delivery.message.key) is not None:
                        waiting = keys.get(key)
                        if waiting is not None:
                            waiting.append(delivery)
                            continue
                        keys[key] = deque()
                    while self._in_flight >= self._limit:
                        self._slot = asyncio.get_running_loop().create_future()
                        await self._slot
                    self._launch(delivery)
        finally:
            await self.wait_idle()

    async def stop(self) -> None:
        """Stop fetching; deliveries not yet handled are left to the transport to deliver again."""
        await self._subscription.aclose()

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _launch(self, delivery: Delivery) -> None:
        self._in_flight += 1
        task = _eager.start(self._handle(delivery))
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, delivery: Delivery) -> None:
        message = delivery.message
        outcome: BaseException | object | None = _RETRYING
        try:
            outcome = await self._settle(delivery, message)
        finally:
            self._in_flight -= 1
            slot = self._slot
            if slot is not None and not slot.done():
                slot.set_result(None)
            if self._keys is not None and message.key is not None:
                self._next_of_key(message.key)
        if self._on_done is not None and outcome is not _RETRYING:
            assert outcome is None or isinstance(outcome, BaseException)
            self._on_done(message, self.route, outcome)

    async def _settle(self, delivery: Delivery, message: Message) -> BaseException | object | None:
        """Handle, then ack, nack or dead-letter; returns the final error (None on success), or
        _RETRYING when the message will come again."""
        replay_for = message.headers.get(REPLAY_GROUP_HEADER) if message.headers else None
        if replay_for is not None and replay_for != self.route.group:
            await delivery.ack()  # a replay meant for another group
            return None
        try:
            current_message.set(message)
            await self._handler(message)
        except Exception as error:
            delay = self._retry.next_delay(error, delivery.attempt)
            if delay is not None:
                await delivery.nack(delay)
                return _RETRYING
            await self._dead_letter(delivery, message, error)
            return error
        await delivery.ack()
        return None

    async def _dead_letter(self, delivery: Delivery, message: Message, error: Exception) -> None:
        route = self.route
        try:
            await store_failure(
                self._dead_letters,
                message,
                topic=route.topic,
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

    def _next_of_key(self, key: str) -> None:
        assert self._keys is not None
        waiting = self._keys[key]
        if waiting:
            self._launch(waiting.popleft())
        else:
            del self._keys[key]
