"""Several subscriptions read as one, for the partitioned subscriptions of the brokers.

Each subscription followed is read by a Task of its own that puts its batches on one queue; the
iterating task takes them from there in the order they arrived. A subscription's error goes the
same way, so the iterating task raises it and may go on; :meth:`FanIn.end` puts the end after
the batches received before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Generic, TypeVar

__all__ = ["FanIn"]

D = TypeVar("D")


class FanIn(Generic[D]):
    """Batches of deliveries from any number of subscriptions, one queue to take them from."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[list[D] | BaseException] = asyncio.Queue()
        self._readers: dict[AsyncIterable[list[D]], asyncio.Task[None]] = {}

    def follow(self, subscription: AsyncIterable[list[D]]) -> None:
        """Read ``subscription`` into the queue, unless a reader of it still runs (one that
        ended on an error starts again)."""
        reader = self._readers.get(subscription)
        if reader is None or reader.done():
            self._readers[subscription] = asyncio.ensure_future(self._read(subscription))

    def forget(self, subscription: AsyncIterable[list[D]]) -> None:
        """Stop keeping track of ``subscription``'s reader (it ended with the subscription)."""
        self._readers.pop(subscription, None)

    async def next(self) -> list[D]:
        """The next batch; raises what a subscription raised, StopAsyncIteration after the end.

        Raising one error drops the others queued meanwhile: subscriptions that failed together
        (every partition, in one outage) are followed again together by the next iteration,
        and cost the consumer one restart instead of one each."""
        item = await self._ready.get()
        if isinstance(item, BaseException):
            if not isinstance(item, StopAsyncIteration):
                self._drop_errors()
            raise item
        return item

    def _drop_errors(self) -> None:
        kept = [self._ready.get_nowait() for _ in range(self._ready.qsize())]
        for item in kept:
            if not isinstance(item, Exception) or isinstance(item, StopAsyncIteration):
                self._ready.put_nowait(item)

    def end(self) -> None:
        """Every batch taken after those queued now raises StopAsyncIteration."""
        self._ready.put_nowait(StopAsyncIteration())

    def queued(self) -> list[D]:
        """Take the deliveries received and not yet taken."""
        left: list[D] = []
        while not self._ready.empty():
            item = self._ready.get_nowait()
            if isinstance(item, list):
                left += item
        return left

    def cancel(self) -> None:
        """Stop every reader."""
        for reader in self._readers.values():
            reader.cancel()

    async def _read(self, subscription: AsyncIterable[list[D]]) -> None:
        try:
            async for batch in subscription:
                self._ready.put_nowait(batch)
        except Exception as exc:  # any: a reader must not end unseen, leaving its queue unread
            self._ready.put_nowait(exc)  # raised to the iterating task, which may go on
