"""Catch-up subscriptions: read the global log from a position, then follow live appends.

The hand-over from catching up to following live needs no coordination with writers, because
``read_all`` is gap-free: once a page comes back shorter than asked, every event up to the head
position read just before it has been seen, so the subscription waits for a position above that
head and reads again. A wake-up lost to a race only delays the next read until ``idle_timeout``;
it can never make the subscription skip or repeat an event.

An ``observed`` subscription (``EventStore.subscribe``) records each page it delivers as a span
when the store traces (see :mod:`tidings.telemetry.store`); projections and the outbox relay
follow the log without, since they trace what they do with each event themselves.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

from tidings.errors import ClosedError
from tidings.eventsourcing.records import RecordedEvent
from tidings.telemetry.store import StoreObserver

__all__ = ["subscribe"]


class _Log(Protocol):
    """The part of an event store a subscription reads."""

    def read_all(
        self, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]: ...

    async def head_position(self) -> int: ...

    async def wait_for_new(self, after: int, timeout: float) -> None: ...

    @property
    def observer(self) -> StoreObserver | None: ...


async def subscribe(
    store: _Log,
    *,
    after: int = 0,
    page_size: int = 500,
    idle_timeout: float = 5.0,
    observed: bool = False,
) -> AsyncIterator[RecordedEvent]:
    """Every event with ``position > after``, in position order, each exactly once, forever.

    Reads pages of ``page_size`` events; when caught up, waits in ``wait_for_new`` (at most
    ``idle_timeout`` seconds, a safety net for appends made by another process on stores that
    wake up in process only). Ends when the store closes; cancel the iterating task to stop.
    """
    position = after
    while True:
        try:
            head = await store.head_position()
            observer = store.observer if observed else None  # known once the store started
            started = time.time_ns() if observer is not None else 0
            page = [event async for event in store.read_all(after=position, limit=page_size)]
        except ClosedError:
            return
        if observer is not None:
            observer.delivered(position, started, page)
        for event in page:
            yield event
        if page:
            position = page[-1].position
        if len(page) < page_size:
            # Every readable event up to ``head`` was in this page or earlier ones. Positions
            # between the last event and ``head`` were erased: skip them, or the wait below
            # would return at once, forever.
            position = max(position, head)
            try:
                await store.wait_for_new(position, idle_timeout)
            except ClosedError:
                return
