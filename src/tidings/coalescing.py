"""Concurrent publishes to one topic, sent together: group commit for ``bus.publish``.

A publish to a topic with nothing in flight goes to the transport at once, alone, so a caller
publishing one message at a time pays nothing. While a call for the topic is in flight, further
publishes wait, and when it returns they all go in one transport call (up to ``MAX_BATCH``
messages), as ``publish_many`` would send them. So 64 tasks each publishing in a loop reach
nearly the rate of ``publish_many``, and every caller still returns only once its own message
was accepted, or raises the error of the call that carried it.

A caller cancelled while its message waits takes it out of the next batch; once the batch is
on its way the message may be sent, as when a transport call itself is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tidings.message import Message

__all__ = ["MAX_BATCH", "Coalescer"]

MAX_BATCH = 1000
"""The most messages one transport call carries."""

Publish = Callable[[str, Sequence[Message]], Awaitable[None]]


class _Lane:
    """One topic: whether a call is in flight, and what waits for the next one."""

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: list[tuple[Message, asyncio.Future[None]]] = []


class Coalescer:
    """Sends one bus's publishes through ``publish``, coalescing those that overlap."""

    __slots__ = ("_lanes", "_publish", "_tasks")

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def send(self, topic: str, message: Message) -> None:
        """Return once ``message`` was accepted; raises what the transport raised."""
        lane = self._lanes.get(topic)
        if lane is None:
            lane = self._lanes[topic] = _Lane()
        if lane.busy:
            accepted = asyncio.get_running_loop().create_future()
            lane.waiting.append((message, accepted))
            await accepted
            return
        lane.busy = True
        try:
            await self._publish(topic, (message,))
        finally:
            if lane.waiting:
                self._after_release(topic, lane)
            else:  # a lone caller: its next publish goes at once, alone again
                lane.busy = False

    def _after_release(self, topic: str, lane: _Lane) -> None:
        """Send what waits on the next loop turn, after the callers a call just released, so
        that those who publish again at once join the batch. With one call in flight at a
        time, batches would otherwise alternate between nearly all the publishers and the
        few released last."""
        asyncio.get_running_loop().call_soon(self._next, topic, lane)

    def _next(self, topic: str, lane: _Lane) -> None:
        """Send what waits for ``topic`` in a Task of its own, or mark the lane free."""
        waiting = [entry for entry in lane.waiting if not entry[1].done()]  # not cancelled
        if not waiting:
            lane.waiting.clear()
            lane.busy = False
            return
        batch, lane.waiting = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
        task = asyncio.get_running_loop().create_task(self._send_batch(topic, lane, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batch(
        self, topic: str, lane: _Lane, batch: list[tuple[Message, asyncio.Future[None]]]
    ) -> None:
        try:
            await self._publish(topic, [message for message, _ in batch])
        except Exception as error:  # each caller learns what became of its message
            for _, accepted in batch:
                if not accepted.done():
                    accepted.set_exception(error)
        except BaseException:  # cancelled (the loop is closing): so are the callers
            for _, accepted in batch:
                accepted.cancel()
            raise
        else:
            for _, accepted in batch:
                if not accepted.done():
                    accepted.set_result(None)
        finally:
            self._after_release(topic, lane)
