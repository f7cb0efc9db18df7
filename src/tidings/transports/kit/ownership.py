"""Which partitions (:mod:`.partitions`) one subscription of a group owns, kept by leases.

Every subscription of a group on a topic runs an :class:`Ownership` over the broker's
:class:`Leases`. A round, every :attr:`Ownership.period` seconds:

1. announces the subscription (its presence lasts a lease) and lists the live ones;
2. renews its leases and takes free partitions until it holds its share: ``count // live``, one
   more for the first ``count % live`` live subscriptions by name, so the shares add up to
   ``count``. It tries partitions in an order rotated by its own name, so that workers reach
   for different ones;
3. gives up what it holds beyond its share: stops reading those partitions, waits until what it
   handed out of them is settled (renewing their leases meanwhile), then releases them.

A new subscription takes nothing in its first round: subscriptions starting together count each
other before any takes partitions. While a subscription holds less than its share (it is new,
or another one still hands partitions over to it) its rounds come every :data:`CATCHING_UP`
seconds instead of every period, so it takes a partition a moment after it is free. A worker
that dies stops renewing; its partitions are free a lease later, and the others take them in
their next round.

Why order holds: only a partition's lease holder reads it. A partition changes hands either when
released, after its owner settled everything it handed out, so the next owner starts where the
last one finished; or when its lease ran out, because its owner died (nothing of it still runs)
or was cut off from the broker for a whole lease. Only in that last case can the cut-off owner's
handlers still be running when the next owner starts: it learns at its next renewal and stops
reading, but what it already handed out may overlap with the redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

from tidings.errors import TidingsError
from tidings.transports.kit.supervise import supervise

__all__ = ["CATCHING_UP", "Leases", "Ownership"]

Partitions = Callable[[set[int]], Awaitable[None]]

CATCHING_UP = 0.2
"""Seconds between the rounds of a subscription holding less than its share (the first round's
wait included): long enough for workers started together to count each other first."""


class Leases(Protocol):
    """One subscription's leases on partitions, and its presence, kept by a broker. Each
    method raises a TidingsError (the broker's errors mapped) when the broker fails."""

    async def announce(self) -> list[str]:
        """Mark this subscription live for a lease; the names of the live subscriptions (this
        one included)."""
        ...

    async def hold(self, held: Sequence[int], wanted: Sequence[int], limit: int) -> set[int]:
        """Renew the leases of ``held`` that are still this subscription's, then take free
        ones of ``wanted``, in order, until ``limit`` are held; the partitions held now."""
        ...

    async def release(self, partitions: Collection[int]) -> None:
        """Give up these leases (those still this subscription's) at once."""

    async def leave(self) -> None:
        """End this subscription's presence."""


class Ownership:
    """The partitions of ``count`` one subscription (``name``) owns, by ``leases`` of ``lease``
    seconds. ``start(partitions)`` is awaited when it gains partitions, ``stop(partitions)`` when
    it must stop reading them (given up or lost), and ``drained(partitions)`` must return once
    nothing handed out of them is unsettled. Use from one event loop.
    """

    def __init__(
        self,
        leases: Leases,
        *,
        count: int,
        lease: float,
        name: str,
        start: Partitions,
        stop: Partitions,
        drained: Partitions,
    ) -> None:
        self._leases = leases
        self._count = count
        self.period = min(lease / 3, 1.0)
        """Seconds between rounds: a lease outlives two missed renewals."""
        first = zlib.crc32(name.encode()) % count
        self._order = [(first + n) % count for n in range(count)]
        self._start = start
        self._stop = stop
        self._drained = drained
        self.owned: set[int] = set()
        self._leaving: set[int] = set()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._name = name
        self._share: int | None = None  # as of the last round
        self._running = False
        self._stopping = False
        self._closing: asyncio.Future[None] | None = None

    def run(self) -> None:
        """Start the rounds in a supervised background task (once; later calls do nothing)."""
        if not self._running:
            self._running = True
            self._spawn(supervise(f"the partition leases of {self._name}", self._rounds))

    async def _rounds(self) -> None:
        with contextlib.suppress(TidingsError):
            await self._leases.announce()  # the first round only counts (module docstring)
        while not self._stopping:  # besides cancelling: a client may swallow a cancellation
            await asyncio.sleep(self.until_next_round())  # the lease clock, not synchronisation
            with contextlib.suppress(TidingsError):  # the broker is away: try next round
                await self.round()

    def reading(self) -> frozenset[int]:
        """The partitions owned and not being given up."""
        return frozenset(self.owned - self._leaving)

    def until_next_round(self) -> float:
        """Seconds to the next round: :data:`CATCHING_UP` while this subscription holds less
        than its share (or has not had a round yet), else :attr:`period`."""
        if self._share is None or len(self.reading()) < self._share:
            return min(self.period, CATCHING_UP)
        return self.period

    async def round(self) -> None:
        """Announce, renew, take up to the share, start giving up the excess."""
        async with self._lock:
            share = self._share = self._share_of(await self._leases.announce())
            keep = sorted(self.owned - self._leaving, key=self._order.index)
            if len(keep) > share:
                giving = set(keep[share:])  # the least preferred
                self._leaving |= giving
                await self._stop(giving)
                self._spawn(self._give_up(giving))
            wanted = [p for p in self._order if p not in self.owned]
            held = await self._leases.hold(sorted(self.owned), wanted, share + len(self._leaving))
            lost, gained = self.owned - held, held - self.owned
            self.owned = held
            if lost - self._leaving:
                await self._stop(lost - self._leaving)
            self._leaving -= lost
            if gained:
                await self._start(gained)

    def _share_of(self, live: list[str]) -> int:
        live = sorted(set(live) | {self._name})
        each, more = divmod(self._count, len(live))
        return each + (live.index(self._name) < more)

    async def _give_up(self, partitions: set[int]) -> None:
        await self._drained(partitions)
        async with self._lock:
            mine = partitions & self.owned
            with contextlib.suppress(TidingsError):  # not renewed either: it runs out
                await self._leases.release(mine)
            self.owned -= mine
            self._leaving -= mine

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop the rounds, release every lease and end the presence (each tried once: what
        fails runs out with its lease). Call once nothing handed out is unsettled. Idempotent:
        a second call waits for the first."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        owned, self.owned = self.owned, set()
        with contextlib.suppress(TidingsError):  # the broker is away: the leases run out
            await self._leases.release(owned)
            await self._leases.leave()
