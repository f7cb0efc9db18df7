"""Deliveries of a Redis subscription, and how their acks and nacks reach Redis.

``ack`` and ``nack`` only record; one background task per subscription sends what was recorded
in bulk, one batch in flight at a time: ``XACK`` per stream, and for nacks
``XCLAIM … IDLE <lease - delay> JUSTID``, which leaves the message pending in Redis but makes it
claimable (by ``XAUTOCLAIM`` with the lease as minimum idle time) once the delay has passed, so
the wait survives this process. A nack delay longer than the lease is held back here until the
rest fits in a lease.

While deliveries are held (handed out and not settled, or nacked for longer than a lease),
their lease is extended every third of it (``XCLAIM … JUSTID`` to the same consumer, which
resets the idle time without counting a delivery), so a slow handler's message is not claimed
by a competing subscription. When the transport closes, what is still held is released: made
claimable at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from tidings.errors import ClosedError
from tidings.message import Message
from tidings.transports.redis_protocol import LOST, command, stream_gone

if TYPE_CHECKING:
    from tidings.transports.redis import RedisTransport

__all__ = ["RedisDelivery", "Settlement"]

logger = logging.getLogger("tidings.transports.redis")

_Nack = tuple["RedisDelivery", float]


class RedisDelivery:
    """One stream entry handed to one subscription. Settling twice does nothing; settling after
    the transport closed does nothing either (the message comes again)."""

    __slots__ = ("_settled", "_settlement", "attempt", "due", "entry", "message", "stream")

    def __init__(
        self, settlement: Settlement, stream: bytes, entry: bytes, message: Message, attempt: int
    ) -> None:
        self._settlement = settlement
        self._settled = False
        self.stream = stream
        self.entry = entry
        self.message = message
        self.attempt = attempt
        self.due: float | None = None
        """For a nack longer than the lease: when (monotonic) the message may come again."""

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            self._settlement.settle(self, None)

    async def nack(self, delay: float = 0.0) -> None:
        if not self._settled:
            self._settled = True
            self._settlement.settle(self, max(delay, 0.0))

    def __repr__(self) -> str:
        return f"RedisDelivery({self.entry!r}, attempt={self.attempt}, {self.message!r})"


class Settlement:
    """The held deliveries of one consumer, and their acks and nacks on the way to Redis.

    ``nacked`` is called with the monotonic times at which nacked messages become claimable,
    once Redis has the nacks.
    """

    def __init__(
        self,
        transport: RedisTransport,
        group: str,
        consumer: str,
        nacked: Callable[[list[float]], Awaitable[None]],
    ) -> None:
        self._transport = transport
        self._group = group
        self._consumer = consumer
        self._nacked = nacked
        self._lease = transport.options.lease
        self._lease_ms = max(int(self._lease * 1000), 1)
        self.unsettled = 0
        """Deliveries handed out and neither acked nor nacked."""
        self.freed = asyncio.Event()
        """Set whenever a delivery is settled."""
        self._held: set[RedisDelivery] = set()
        self._acks: list[RedisDelivery] = []
        self._nacks: list[_Nack] = []
        self._flusher: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._finished = False

    def hold(self, batch: list[RedisDelivery]) -> None:
        """``batch`` is being handed out: count it and keep its lease from now on."""
        self.unsettled += len(batch)
        self._held.update(batch)
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    def settle(self, delivery: RedisDelivery, delay: float | None) -> None:
        """Record an ack (``delay`` None) or a nack."""
        if self._finished:
            return
        self.unsettled -= 1
        if not self.freed.is_set():
            self.freed.set()
        if delay is None:
            self._held.discard(delivery)
            self._acks.append(delivery)
        elif delay < self._lease:
            self._held.discard(delivery)
            self._nacks.append((delivery, delay))
        else:  # held (its lease extended) until the rest of the delay fits in a lease
            delivery.due = time.monotonic() + delay
            return
        self._flush_soon()

    def stop_keeping(self) -> None:
        """Stop extending leases (the subscription closed): what is held and never settled comes
        again after the lease, or at once when the transport closes."""
        if self._keeper is not None:
            self._keeper.cancel()

    async def finish(self) -> None:
        """Release what is held so another subscription claims it at once, then send the last
        acks and nacks (one try). Later settlements are ignored."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.wait([self._keeper])
        now = time.monotonic()
        for delivery in self._held:
            wait = 0.0 if delivery.due is None else max(delivery.due - now, 0.0)
            self._nacks.append((delivery, min(wait, self._lease)))
        self._held.clear()
        self._finished = True
        self._flush_soon()
        if self._flusher is not None:
            await self._flusher

    def _flush_soon(self) -> None:
        if self._flusher is None and (self._acks or self._nacks):
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Send recorded acks and nacks until none are left; one batch in flight at a time."""
        pause = 0.0
        try:
            while self._acks or self._nacks:
                acks, self._acks = self._acks, []
                nacks, self._nacks = self._nacks, []
                try:
                    await self._send(acks, nacks)
                    pause = 0.0
                except LOST as exc:
                    if self._finished:  # the transport is closing: one try only
                        self._unsent(len(acks) + len(nacks), exc)
                        return
                    self._acks[:0], self._nacks[:0] = acks, nacks
                    pause = min(max(pause * 2, 0.05), 2.0)
                    await asyncio.sleep(pause)  # back off while Redis comes back
                except (RedisError, ClosedError) as exc:
                    if not stream_gone(exc):  # else Redis lost them anyway
                        self._unsent(len(acks) + len(nacks), exc)
        finally:
            self._flusher = None

    def _unsent(self, count: int, exc: Exception) -> None:
        logger.warning(
            "%s: could not settle %d deliveries, they come again: %s", self._consumer, count, exc
        )

    async def _send(self, acks: list[RedisDelivery], nacks: list[_Nack]) -> None:
        commands: list[tuple[Any, ...]] = []
        for stream, entries in _by_stream(acks).items():
            commands.append(("XACK", stream, self._group, *entries))
        released: dict[int, list[RedisDelivery]] = {}
        for delivery, delay in nacks:
            released.setdefault(max(self._lease_ms - int(delay * 1000), 0), []).append(delivery)
        for idle, deliveries in released.items():
            for stream, entries in _by_stream(deliveries).items():
                commands.append(self._claim(stream, entries, "IDLE", idle))
        await self._run(commands)
        if nacks:
            now = time.monotonic()
            await self._nacked([now + delay for _, delay in nacks])

    async def _keep(self) -> None:
        """Every third of the lease: extend the lease of held deliveries; release those whose
        nack delay now fits in a lease."""
        while True:
            await asyncio.sleep(self._lease / 3)  # the lease clock, not synchronisation
            now = time.monotonic()
            kept: list[RedisDelivery] = []
            for delivery in list(self._held):
                if delivery.due is not None and delivery.due - now < self._lease:
                    self._held.discard(delivery)
                    self._nacks.append((delivery, delivery.due - now))
                else:
                    kept.append(delivery)
            self._flush_soon()
            commands = [self._claim(s, e) for s, e in _by_stream(kept).items()]
            with contextlib.suppress(*LOST, RedisError, ClosedError):
                await self._run(commands)

    def _claim(self, stream: bytes, entries: list[bytes], *options: Any) -> tuple[Any, ...]:
        """XCLAIM to this consumer that counts no delivery: resets (or sets) the idle time."""
        return ("XCLAIM", stream, self._group, self._consumer, 0, *entries, *options, "JUSTID")

    async def _run(self, commands: list[tuple[Any, ...]]) -> None:
        if not commands:
            return
        client = await self._transport.connected()
        if len(commands) == 1:
            await command(client, *commands[0])
            return
        async with client.pipeline(transaction=False) as pipe:
            for args in commands:
                pipe.execute_command(*args)
            await pipe.execute()


def _by_stream(deliveries: Iterable[RedisDelivery]) -> dict[bytes, list[bytes]]:
    grouped: dict[bytes, list[bytes]] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.stream, []).append(delivery.entry)
    return grouped
