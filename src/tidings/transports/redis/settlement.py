"""What one consumer holds on Redis, and how its acks and nacks get there.

``ack`` and ``nack`` only record; a :class:`~tidings.transports.kit.settle.Settler` sends what was
recorded in bulk, one batch in flight at a time: ``XACK`` per stream, and for nacks
``XCLAIM … IDLE <lease - delay> JUSTID``, which leaves the message pending in Redis but makes it
claimable (by ``XAUTOCLAIM`` with the lease as minimum idle time) once the delay has passed, so
the wait survives this process. A nack delay longer than the lease is held back here until the
rest fits in a lease. A lost connection keeps the batch and tries again; any other failure gives
it up, logged (the messages come again), except a stream or group Redis lost, whose pending
entries are gone anyway.

While deliveries are held (handed out and not settled, or nacked for longer than a lease),
a lease keeper extends their lease every third of it (``XCLAIM … JUSTID`` to the same consumer,
which resets the idle time without counting a delivery), so a slow handler's message is not
claimed by a competing subscription. The keeper is supervised: an unexpected error is logged and
the keeper starts again. When the transport closes, what is still held is released: made
claimable at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tidings.errors import ClosedError
from tidings.message import Message
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.settle import Settler
from tidings.transports.kit.supervise import supervise
from tidings.transports.redis.wire import command, stream_gone

__all__ = ["Entry", "RedisDelivery", "Settlement"]

Entry = tuple[bytes, bytes]
"""A stream key and the id of an entry in it."""

_Settled = tuple[bytes, bytes, float | None]
"""Stream, entry id, and None for an ack or the nack's delay in seconds."""


class RedisDelivery:
    """One stream entry handed to one subscription. Settling twice does nothing; settling after
    the transport closed does nothing either (the message comes again)."""

    __slots__ = ("_settle", "_settled", "attempt", "entry", "message", "stream")

    def __init__(
        self,
        settle: Callable[[bytes, bytes, float | None], None],
        stream: bytes,
        entry: bytes,
        message: Message,
        attempt: int,
    ) -> None:
        self._settle = settle
        self._settled = False
        self.stream = stream
        self.entry = entry
        self.message = message
        self.attempt = attempt

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            self._settle(self.stream, self.entry, None)

    async def nack(self, delay: float = 0.0) -> None:
        if not self._settled:
            self._settled = True
            self._settle(self.stream, self.entry, max(delay, 0.0))

    def __repr__(self) -> str:
        return f"RedisDelivery({self.entry!r}, attempt={self.attempt}, {self.message!r})"


class Settlement:
    """The held entries of one consumer of ``group``, and their acks and nacks on the way to
    Redis (through ``connected()``, the transport's client; errors classed by ``errors``).

    ``nacked`` is called with the monotonic times at which nacked messages become claimable,
    once Redis has the nacks. Use from one event loop.
    """

    def __init__(
        self,
        *,
        connected: Callable[[], Awaitable[Redis]],
        errors: ErrorMap,
        group: str,
        consumer: str,
        lease: float,
        nacked: Callable[[list[float]], Awaitable[None]],
    ) -> None:
        self._connected = connected
        self._errors = errors
        self._group = group
        self._consumer = consumer
        self._nacked = nacked
        self._lease = lease
        self._lease_ms = max(int(lease * 1000), 1)
        self.unsettled = 0
        """Deliveries handed out and neither acked nor nacked."""
        self.freed = asyncio.Event()
        """Set whenever a delivery is settled."""
        self._held: dict[Entry, float | None] = {}
        """Entries whose lease is kept: None, or when (monotonic) a long nack's delay ends."""
        self._settler = Settler(self._send, name=consumer, transient=errors.unreachable)
        self._keeper: asyncio.Task[None] | None = None
        self._finished = False

    def hold(self, entries: list[Entry]) -> None:
        """``entries`` are being handed out: count them and keep their lease from now on."""
        self.unsettled += len(entries)
        self._held.update(dict.fromkeys(entries))
        if self._keeper is None:
            what = f"the lease keeper of Redis consumer {self._consumer}"
            self._keeper = asyncio.get_running_loop().create_task(supervise(what, self._keep))

    def settle(self, stream: bytes, entry: bytes, delay: float | None) -> None:
        """Record an ack (``delay`` None) or a nack of a held entry."""
        if self._finished:
            return
        self.unsettled -= 1
        if not self.freed.is_set():
            self.freed.set()
        if delay is not None and delay >= self._lease:
            # held (its lease extended) until the rest of the delay fits in a lease
            self._held[stream, entry] = time.monotonic() + delay
            return
        self._held.pop((stream, entry), None)
        self._settler.record((stream, entry, delay))

    async def drained(self, streams: Collection[bytes]) -> None:
        """Return once no entry of ``streams`` is held (handed out and not settled, or nacked
        for longer than a lease)."""
        while any(stream in streams for stream, _ in self._held):
            self.freed.clear()
            await self.freed.wait()

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
        for (stream, entry), due in self._held.items():
            wait = 0.0 if due is None else min(max(due - now, 0.0), self._lease)
            self._settler.record((stream, entry, wait))
        self._held.clear()
        self._finished = True
        await self._settler.close()

    async def _send(self, batch: list[_Settled]) -> None:
        acks: list[Entry] = []
        released: dict[int, list[Entry]] = {}  # idle time to set (ms) -> entries
        delays: list[float] = []
        for stream, entry, delay in batch:
            if delay is None:
                acks.append((stream, entry))
            else:
                idle = max(self._lease_ms - int(delay * 1000), 0)
                released.setdefault(idle, []).append((stream, entry))
                delays.append(delay)
        commands: list[tuple[Any, ...]] = [
            ("XACK", stream, self._group, *ids) for stream, ids in _by_stream(acks).items()
        ]
        for idle, entries in released.items():
            for stream, ids in _by_stream(entries).items():
                commands.append(self._claim(stream, ids, "IDLE", idle))
        try:
            await self._run(commands)
        except ResponseError as exc:
            if stream_gone(exc):
                return  # Redis lost the entries anyway: nothing left to settle
            raise
        if delays:
            now = time.monotonic()
            await self._nacked([now + delay for delay in delays])

    async def _keep(self) -> None:
        """Every third of the lease: extend the lease of held entries; release those whose nack
        delay now fits in a lease. Runs until cancelled."""
        while True:
            await asyncio.sleep(self._lease / 3)  # the lease clock, not synchronisation
            now = time.monotonic()
            kept: list[Entry] = []
            for held, due in list(self._held.items()):
                if due is not None and due - now < self._lease:
                    del self._held[held]
                    self._settler.record((*held, max(due - now, 0.0)))
                    self.freed.set()  # no longer held: a drain may be waiting for it
                else:
                    kept.append(held)
            commands = [self._claim(stream, ids) for stream, ids in _by_stream(kept).items()]
            # Redis away or the transport closing: the next round tries again
            errors = self._errors
            with contextlib.suppress(*errors.unreachable, *errors.client, ClosedError):
                await self._run(commands)

    def _claim(self, stream: bytes, ids: list[bytes], *options: Any) -> tuple[Any, ...]:
        """XCLAIM to this consumer that counts no delivery: resets (or sets) the idle time."""
        return ("XCLAIM", stream, self._group, self._consumer, 0, *ids, *options, "JUSTID")

    async def _run(self, commands: list[tuple[Any, ...]]) -> None:
        if not commands:
            return
        client = await self._connected()
        if len(commands) == 1:
            await command(client, *commands[0])
            return
        async with client.pipeline(transaction=False) as pipe:
            for args in commands:
                pipe.execute_command(*args)
            await pipe.execute()


def _by_stream(entries: Iterable[Entry]) -> dict[bytes, list[bytes]]:
    grouped: dict[bytes, list[bytes]] = {}
    for stream, entry in entries:
        grouped.setdefault(stream, []).append(entry)
    return grouped
