"""A group's subscription to a topic split into partitions owned by leases.

A broker without pinned consumers gives each member of a group the same two kinds of reading:
the group's ``shared`` subscription (messages without a key, competed for by every member) and
one subscription per partition this member owns (:mod:`.ownership`). :class:`Partitioned` reads
them as one through a :class:`~tidings.transports.kit.fan_in.FanIn` and runs the ownership
rounds from the first read on. Closing gives back what was received and not taken. A broker's
subclass says how a gained partition starts being read, how to tell when a given-up one is
drained, and how it finishes once closed.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, Self, TypeVar

from tidings.transports.base import Delivery
from tidings.transports.kit.fan_in import FanIn
from tidings.transports.kit.ownership import Leases, Ownership

__all__ = ["NamedLeases", "Part", "Partitioned"]


class Part(Protocol):
    """One broker subscription read by :class:`Partitioned`: the shared one or a partition's."""

    @property
    def topic(self) -> str: ...

    @property
    def group(self) -> str: ...

    def __aiter__(self) -> AsyncIterator[list[Any]]: ...

    async def aclose(self) -> None:
        """Hand out nothing more; what was received and not handed out goes back."""


class NamedLeases(Leases, Protocol):
    """Leases that also name the subscription keeping them and how long each lasts."""

    @property
    def name(self) -> str: ...

    @property
    def lease(self) -> float: ...


S = TypeVar("S", bound=Part)
D = TypeVar("D", bound=Delivery)


class Partitioned(ABC, Generic[S, D]):
    """The deliveries (of type ``D``) of ``shared`` and of the subscription (of type ``S``) of
    each of ``count`` partitions owned by ``leases``; ``partition(n)`` makes partition ``n``'s.
    Iterate it from one task; it ends (StopAsyncIteration) once closed."""

    def __init__(
        self, shared: S, partition: Callable[[int], S], leases: NamedLeases, *, count: int
    ) -> None:
        self.topic, self.group = shared.topic, shared.group
        self._shared = shared
        self._partition = partition
        self._parts: dict[int, S] = {}
        self._batches: FanIn[D] = FanIn()
        self._ownership = Ownership(
            leases, count=count, lease=leases.lease, name=leases.name,
            start=self.start, stop=self.stop_reading, drained=self.drained,
        )  # fmt: skip
        self._closed = False
        self._finishing: asyncio.Future[None] | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[D]:
        if self._closed:
            raise StopAsyncIteration
        self._ownership.run()
        for subscription in self._every():
            self._batches.follow(subscription)  # again, if it ended on an error
        return await self._batches.next()  # StopAsyncIteration once closed

    def partitions(self) -> frozenset[int]:
        """The partitions it reads now: those it owns and is not giving up."""
        return self._ownership.reading()

    @abstractmethod
    async def start(self, partitions: set[int]) -> None:
        """Read these partitions too (their leases were just taken)."""

    async def stop_reading(self, partitions: set[int]) -> None:
        """Hand out nothing more of these partitions (given up or lost); what their
        subscriptions received and did not hand out goes back."""
        for n in partitions:
            if (part := self._parts.get(n)) is not None:
                await part.aclose()

    async def drained(self, partitions: set[int]) -> None:
        """Return once nothing handed out of these partitions is unsettled; they are no longer
        read from then on."""
        for n in partitions:
            if (part := self._parts.pop(n, None)) is not None:
                await self._settled(part)
                self._batches.forget(part)

    async def aclose(self) -> None:
        """Stop handing out deliveries: every subscription closes (what it received and did not
        hand out goes back), so do the batches received and not yet taken; then :meth:`_finish`
        runs in the background. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in self._every():
            await subscription.aclose()
        for delivery in self._batches.queued():  # received, never handed out: given back now
            await delivery.nack()
        self._batches.end()
        self._finishing = asyncio.ensure_future(self._finish())

    @abstractmethod
    async def _finish(self) -> None:
        """Once closed: release the leases when what was handed out is settled."""

    @abstractmethod
    async def _settled(self, part: S) -> None:
        """Return once ``part``, closed by :meth:`stop_reading`, has nothing unsettled."""

    def _every(self) -> tuple[S, ...]:
        """The shared subscription and those of the partitions read now."""
        return (self._shared, *self._parts.values())
