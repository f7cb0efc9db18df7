"""Subscriptions over a database queue with leases: what the SQLite and PostgreSQL transports share.

The database side is a :class:`Queue` (one group's cursor on one topic). One :meth:`Queue.exchange`
is one transaction: it writes the acks and nacks recorded since the last one, renews or gives back
this subscription's leases, and leases up to ``want`` more messages. :class:`LeasedSubscription`
does the rest, the same for both databases:

* ``ack``/``nack`` only record; the next fetch writes them, or a keeper task on the next loop turn,
  so a busy consumer settles hundreds of messages per transaction;
* at most ``prefetch`` deliveries are out and unsettled at any time; once some are out, it
  leases more only when half of ``prefetch`` (or more) can be leased: a busy subscription then
  takes one lease transaction per half batch rather than one per settled message, which keeps
  the write lock (SQLite's one writer, shared by every process on the file) free for the others;
* the keeper renews the leases every ``lease / 3`` seconds while deliveries are out, so only a
  dead process's messages come again (when their leases run out);
* the live subscriptions of a group, in any process, share its keys (see
  :mod:`tidings.transports.kit.sharing`); a closing one leaves the group at once;
* an idle subscription waits for its wake-up event (rung on commits in this process, or by the
  database's notifications) or until the queue says something becomes due (a nack delay, a lease
  running out), looking again at least every ``poll`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tidings.errors import ClosedError, ServiceUnavailable, TidingsError
from tidings.message import Message
from tidings.sql.outage import Outage
from tidings.topics import validate_pattern
from tidings.transports.kit.wire import from_wire

__all__ = [
    "Exchange",
    "LeasedDelivery",
    "LeasedSubscription",
    "LeasedSubscriptions",
    "Queue",
    "Row",
]

_log = logging.getLogger("tidings.transports")
_RETRY_CAP = 5.0
"""Most seconds between tries while the database is unavailable."""

Row = tuple[Any, ...]
"""``(seq, attempt, topic, id, type, key, headers, data, time)`` of one leased message."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one transaction of a subscription does."""

    owner: str
    now: float
    acks: list[int]
    nacks: list[tuple[float, int]]
    """``(available_at, seq)`` of nacked messages."""
    want: int
    """How many messages to lease (0: only write)."""
    lease_until: float
    renew: list[int]
    """Seqs whose leases to extend to ``lease_until``: the deliveries out and unsettled."""
    release: bool
    """Give back every lease of ``owner`` (the transport is closing), not counting an attempt."""
    leaving: bool = False
    """The subscription fetches no more: it stops being a member of the group, so its keys go
    to the others (see :mod:`tidings.transports.kit.sharing`); otherwise the exchange renews
    its membership."""


class Queue(Protocol):
    """One group's cursor on one topic, in a database."""

    async def open(self) -> None:
        """Create the cursor if it is new (a new group starts at the oldest message kept)."""

    async def exchange(self, exchange: Exchange) -> tuple[list[Row], float | None]:
        """Do ``exchange`` in one transaction; returns the leased rows in queue order and, when
        none, the time something becomes due (or None)."""
        ...

    def watch(self, event: asyncio.Event) -> None:
        """Set ``event`` whenever messages may have arrived."""

    def unwatch(self, event: asyncio.Event) -> None: ...


class LeasedDelivery:
    """One leased message. ``ack``/``nack`` are recorded at once and written in bulk; calling
    either a second time does nothing."""

    __slots__ = ("_done", "_seq", "_subscription", "attempt", "message", "topic")

    def __init__(
        self, subscription: LeasedSubscription, seq: int, attempt: int, topic: str, message: Message
    ) -> None:
        self._subscription = subscription
        self._seq = seq
        self._done = False
        self.attempt = attempt
        self.topic = topic
        self.message = message

    async def ack(self) -> None:
        if not self._done:
            self._done = True
            self._subscription._settle(self._seq, None)

    async def nack(self, delay: float = 0.0) -> None:
        if not self._done:
            self._done = True
            self._subscription._settle(self._seq, max(delay, 0.0))

    def __repr__(self) -> str:
        return f"LeasedDelivery(topic={self.topic!r}, attempt={self.attempt}, {self.message!r})"


class LeasedSubscription:
    """Batches of :class:`LeasedDelivery` from a :class:`Queue`; see the module docstring.

    A database that is unavailable (:class:`ServiceUnavailable`: unreachable, restarting, or
    locked by another connection for long) never ends the subscription: opening, fetching and
    writing are tried again after ``poll`` seconds, doubling up to :data:`_RETRY_CAP`, with one
    log record when the spell begins and one when it ends. Opening and fetching are tried again
    at once when the wake-up event rings meanwhile (the transport rings it when its connection
    to the database comes back). Other errors are raised from the iteration.
    """

    def __init__(
        self,
        queue: Queue,
        topic: str,
        *,
        group: str,
        prefetch: int,
        lease: float,
        poll: float,
        on_idle: Callable[[LeasedSubscription], None],
    ) -> None:
        self.topic = topic
        self.group = group
        self._queue = queue
        self._prefetch = prefetch
        self._refill = max(prefetch // 2, 1)
        """Fewest deliveries worth a lease while some are out (see the module docstring)."""
        self._lease = lease
        self._poll = poll
        self._on_idle = on_idle
        self._owner = uuid.uuid4().hex
        self._opened = False
        self._member = False
        """Whether the queue counts this subscription a member of the group."""
        self._acks: list[int] = []
        self._nacks: list[tuple[float, int]] = []
        self._out: set[int] = set()
        self._renew_at = 0.0
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._stop = asyncio.Event()
        self._outage = Outage(f"the queue of {group!r} on {topic!r}", first=poll, cap=_RETRY_CAP)
        self._keeper: asyncio.Task[None] | None = None
        self._exchanging = asyncio.Lock()
        self._closed = False

    def __aiter__(self) -> LeasedSubscription:
        return self

    async def __anext__(self) -> list[LeasedDelivery]:
        """The next batch, waiting as long as it takes; raises StopAsyncIteration once closed
        (or once the transport closed)."""
        try:
            return await self._next()
        except ClosedError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    async def _next(self) -> list[LeasedDelivery]:
        while not self._opened and not self._closed:
            self._wake.clear()
            try:
                await self._open()
            except ServiceUnavailable as exc:
                await self._pause(exc)
        while not self._closed:
            want = self._prefetch - len(self._out)
            if self._out and want < self._refill:
                want = 0
            self._wake.clear()
            timeout = self._poll  # when full, an ack or nack rings
            if want > 0:
                try:
                    rows, due = await self._exchange(want)
                except ServiceUnavailable as exc:
                    await self._pause(exc)
                    continue
                if rows:
                    self._out.update(row[0] for row in rows)
                    return [self._delivery(row) for row in rows]
                if due is not None:
                    timeout = min(timeout, due - time.time())
            if timeout > 0 and not self._wake.is_set():
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        raise StopAsyncIteration

    async def _pause(self, error: ServiceUnavailable) -> None:
        """Wait before trying again after ``error``; less if the subscription closes or its
        wake-up event rings (cleared before the try), which the transport also rings when its
        connection to the database comes back."""
        delay = self._outage.failed(error)
        waits = [asyncio.ensure_future(event.wait()) for event in (self._wake, self._stop)]
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def aclose(self) -> None:
        """Stop fetching and write the recorded acks and nacks. Deliveries handed out keep their
        leases (renewed) until settled; those never settled come again once the transport
        closes, or ``lease`` seconds after the process died. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._stop.set()
        self._queue.unwatch(self._wake)
        if self._keeper is None:
            self._on_idle(self)
            return
        try:
            await self._flush()
        except ServiceUnavailable as exc:
            self._outage.failed(exc)  # the keeper tries again
        self._kick.set()  # the keeper ends once nothing is in flight

    async def shutdown(self) -> None:
        """For the transport's close: give back the leases of deliveries never settled (they
        come again at once, without counting an attempt)."""
        await self.aclose()
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            try:
                await self._exchange(0, release=True)
            except (TidingsError, OSError):
                _log.exception("giving back the leases of %r failed", self.topic)

    def _delivery(self, row: Row) -> LeasedDelivery:
        """The delivery of a log row; a row another program wrote with garbage in it still
        comes through (see :func:`~tidings.transports.kit.wire.from_wire`)."""
        seq, attempt, topic, id_, type_, key, headers, data, at = row
        message, attempt = from_wire(
            topic, data, None, attempt, ident=id_, kind=type_, stamp=at, key=key,
            json_headers=headers or None,
        )  # fmt: skip
        return LeasedDelivery(self, seq, attempt, topic, message)

    def _settle(self, seq: int, delay: float | None) -> None:
        """Record an ack (``delay`` None) or a nack, for the next write."""
        if delay is None:
            self._acks.append(seq)
        else:
            self._nacks.append((time.time() + delay, seq))
        self._out.discard(seq)
        self._wake.set()
        self._kick.set()

    async def _open(self) -> None:
        if not self._closed:
            self._queue.watch(self._wake)  # from now on: it also ends a pause (see _pause)
        await self._queue.open()
        self._opened = True
        self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        """Flush settlements soon after they happen and renew leases before they run out;
        after aclose, until every delivery handed out was settled."""
        try:
            while not (self._closed and not self._out):
                try:
                    async with asyncio.timeout(self._lease / 3):
                        await self._kick.wait()
                except TimeoutError:
                    pass
                self._kick.clear()
                await asyncio.sleep(0)  # let the handlers finishing in this loop turn settle too
                try:
                    await self._flush()
                except ServiceUnavailable as exc:
                    await asyncio.sleep(self._outage.failed(exc))
        finally:
            self._on_idle(self)

    async def _flush(self) -> None:
        """Write the recorded acks and nacks and renew the leases; raises ServiceUnavailable
        (they are kept for the next try), logs other failures."""
        try:
            await self._exchange(0)
        except ServiceUnavailable:
            raise
        except (TidingsError, OSError):
            _log.exception("writing the acks of %r failed; trying again later", self.topic)

    async def _exchange(
        self, want: int, *, release: bool = False
    ) -> tuple[list[Row], float | None]:
        # One transaction at a time per subscription: the fetcher's and the keeper's, run at
        # once on two connections, lock the same pending rows in different orders (deadlock).
        async with self._exchanging:
            return await self._exchange_now(want, release)

    async def _exchange_now(self, want: int, release: bool) -> tuple[list[Row], float | None]:
        acks, self._acks = self._acks, []
        nacks, self._nacks = self._nacks, []
        now = time.time()
        renew = list(self._out) if self._out and now >= self._renew_at else []
        if self._closed and not release:
            want = 0
        leave = self._closed and self._member
        if not (want or acks or nacks or renew or release or leave):
            return [], None
        exchange = Exchange(
            self._owner, now, acks, nacks, want, now + self._lease, renew, release, self._closed
        )
        try:
            result = await self._queue.exchange(exchange)
        except BaseException:
            self._acks[:0] = acks  # keep them for the next try
            self._nacks[:0] = nacks
            raise
        self._outage.over()
        self._member = not exchange.leaving  # what the queue now holds, whatever closed since
        if renew:
            self._renew_at = now + self._lease / 3
        return result


class LeasedSubscriptions:
    """The subscriptions of one transport, over the queues that ``queue(topic, group)`` makes;
    each leases for ``lease`` seconds and looks every ``poll`` seconds. Not thread-safe: one
    event loop."""

    def __init__(self, queue: Callable[[str, str], Queue], *, lease: float, poll: float) -> None:
        self._queue = queue
        self._lease = lease
        self._poll = poll
        self._live: set[LeasedSubscription] = set()

    def open(self, topic: str, group: str, prefetch: int) -> LeasedSubscription:
        """A subscription of ``group`` to ``topic`` (or a wildcard pattern); raises ValueError
        for a malformed pattern or a ``prefetch`` below 1."""
        validate_pattern(topic)
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        subscription = LeasedSubscription(
            self._queue(topic, group), topic, group=group, prefetch=prefetch,
            lease=self._lease, poll=self._poll, on_idle=self._live.discard,
        )  # fmt: skip
        self._live.add(subscription)
        return subscription

    async def shutdown(self) -> None:
        """:meth:`LeasedSubscription.shutdown` every subscription still live, one by one."""
        for subscription in list(self._live):
            await subscription.shutdown()
