"""Pull subscriptions on a durable JetStream consumer, and their deliveries.

A subscription asks its group's durable consumer for messages with pull requests (``batch`` up
to ``prefetch``, expiring after ``pull_expires`` seconds) sent to a private inbox, and keeps the
messages requested plus those handed out and not yet settled at most ``prefetch``: when half of
that room is free again it asks for more, so the next batch is usually on its way before the
current one is handled. The server delivers a consumer's messages in stream order and shares them
between the subscriptions of the group (competing consumers).

``ack`` and ``nack`` are recorded and published to the deliveries' reply subjects in bulk on the
next loop turn (:class:`~tidings.transports.kit.settle.Settler`); the connection's flusher writes
them together. ``nack(delay)`` is JetStream's own delayed redelivery; ``attempt`` is the server's
delivery count.

A delivery handed out and not settled for a third of the consumer's ``ack_wait`` is reported
in progress (``+WPI``, which starts its ``ack_wait`` again) every third of ``ack_wait`` until it
is settled or the transport closes: a slow handler, or a key's messages queued behind it, never
come again while their subscription lives. So ``ack_wait`` only says how soon the deliveries of
a subscription that is gone (its process died) come again.

What a closed subscription gives back (``-NAK``) is written only once its pull requests have
expired, in stream order: the server would otherwise hand it at once to one of those requests,
whose inbox no longer listens, and it would come again only after ``ack_wait``, behind the
messages that followed it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING

import nats.errors

from tidings.errors import ClosedError, TidingsError
from tidings.message import Message
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.settle import Settler
from tidings.transports.nats import fast_path
from tidings.transports.nats.wire import decode

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsInboxSubscription

__all__ = ["Attach", "NatsDelivery", "NatsSubscription"]

Attach = Callable[[bool], Awaitable[tuple["NATS", str]]]
"""Make sure the group's consumer exists (``True``: it was deleted, create it again); the
connection and the consumer's pull subject."""

_ACK = b"+ACK"
_NAK = b"-NAK"
_IN_PROGRESS = b"+WPI"
_log = logging.getLogger("tidings.transports.nats")
_GRACE = 1.0
"""Seconds past a pull request's expiry after which its unanswered rest is written off."""


class NatsDelivery:
    """One JetStream message handed to one subscription. Settling twice does nothing."""

    __slots__ = ("_msg", "_received", "_settled", "_subscription", "message")

    def __init__(
        self, subscription: NatsSubscription, msg: Msg, message: Message, received: float
    ) -> None:
        self._subscription = subscription
        self._msg = msg
        self._received = received
        self._settled = False
        self.message = message

    @property
    def attempt(self) -> int:
        """The server's delivery count: 1 on the first delivery."""
        return self._msg.metadata.num_delivered

    async def ack(self) -> None:
        await self._subscription.settle(self, _ACK)

    async def nack(self, delay: float = 0.0) -> None:
        """Deliver again after ``delay`` seconds (the server keeps the timer)."""
        payload = b'-NAK {"delay":%d}' % int(delay * 1e9) if delay > 0 else _NAK
        await self._subscription.settle(self, payload)


class NatsSubscription:
    """Batches of deliveries from one group's durable consumer, until :meth:`aclose`.

    The first batch after attaching to the consumer (again, after an error) is empty: it tells
    the iterating task that fetching works, before any message comes. Iterate it from one task;
    ``ack``/``nack`` may come from any task of the same loop, also after :meth:`aclose` (until
    the transport closes).
    """

    def __init__(
        self,
        topic: str,
        group: str,
        *,
        prefetch: int,
        attach: Attach,
        errors: ErrorMap,
        topic_start: int,
        expires: float,
        ack_wait: float,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.topic = topic
        self.group = group
        self._attach = attach
        self._errors = errors
        self._prefetch = prefetch
        self._low_water = (prefetch + 1) // 2
        self._topic_start = topic_start
        self._expires = expires
        self._in_progress_every = ack_wait / 3
        self._nc: NATS | None = None
        self._inbox: NatsInboxSubscription | None = None
        self._pull_subject = ""
        self._reply = ""
        self._buffer: list[Msg] = []
        self._wake = asyncio.Event()
        self._settler = Settler(
            self._write,
            name=f"group {group!r} on {topic!r}",
            transient=(nats.errors.OutboundBufferLimitError,),
        )
        self._requested = 0
        """Messages asked for and not yet handed out: in flight from the server or buffered."""
        self._unsettled: dict[NatsDelivery, None] = {}
        """Deliveries handed out and neither acked nor nacked, the oldest first."""
        self._keeping: asyncio.Task[None] | None = None
        self._all_settled = asyncio.Event()
        self._expires_at = 0.0
        self._gone = False
        """The group's consumer was deleted (``tidings groups drop``): create it again."""
        self._closed = False
        self._given_back: list[tuple[Msg, bytes]] = []
        """``-NAK``s of the closed subscription, written once its pull requests expired."""
        self._giving_back: asyncio.Task[None] | None = None

    def __aiter__(self) -> NatsSubscription:
        return self

    async def __anext__(self) -> list[NatsDelivery]:
        if self._inbox is None and not self._closed:
            try:
                await self._open()
            except ClosedError:
                if self._closed:  # closed while opening: the end, not a failure
                    raise StopAsyncIteration from None
                raise
            # Attached: a consumer restarting after a failure runs again, though no message
            # may come for a long while (or it would read as restarting until then).
            return []
        while not self._closed:
            if self._gone:
                await self._attach_again()
            if self._buffer:
                batch = self._take()
                await self._pull()
                if batch:
                    return batch
                continue
            await self._pull()
            await self._wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop fetching. Messages received and not handed out are given back at once;
        deliveries handed out and not settled come again after the consumer's ``ack_wait``,
        unless settled before the transport closes."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        inbox, self._inbox = self._inbox, None
        nc = self._nc
        if inbox is None or nc is None or nc.is_closed:
            return
        with suppress(nats.errors.Error):  # already gone with its connection
            await inbox.unsubscribe()
        self._give_back([(msg, _NAK) for msg in self._buffer if msg.reply])
        self._buffer.clear()
        await self._settler.drain()

    async def shutdown(self) -> None:
        """For the transport's close: :meth:`aclose`, write what was settled (what was given
        back once the pull requests expired), ignore later settlements (those deliveries come
        again)."""
        await self.aclose()
        if self._keeping is not None:
            self._keeping.cancel()
        if self._giving_back is not None:  # at most pull_expires: else it comes after ack_wait
            await asyncio.wait((self._giving_back,))
        await self._settler.close()

    async def settle(self, delivery: NatsDelivery, payload: bytes) -> None:
        """Record ``delivery``'s ``+ACK`` or ``-NAK``; ask for more when there is room."""
        if delivery._settled:
            return
        delivery._settled = True
        del self._unsettled[delivery]
        if not self._unsettled:
            self._all_settled.set()
        if self._closed and payload[0] == _NAK[0]:
            self._give_back([(delivery._msg, payload)])
        else:
            self._settler.record((delivery._msg, payload))
        if not self._closed and self._room() >= self._low_water:
            with suppress(TidingsError):  # the iterating task asks again
                await self._pull()

    async def settled(self) -> None:
        """Return once every delivery handed out so far is settled and (after :meth:`aclose`)
        the pull requests sent have expired: until then the server may still hand them
        messages, which would come again only after ``ack_wait``."""
        while self._unsettled:
            self._all_settled.clear()
            await self._all_settled.wait()
        if self._closed:
            await asyncio.sleep(max(self._expires_at + _GRACE - time.monotonic(), 0.0))
            if self._giving_back is not None:
                await asyncio.wait((self._giving_back,))

    def _give_back(self, naks: list[tuple[Msg, bytes]]) -> None:
        """Write ``naks`` (of the closed subscription) once its pull requests expired."""
        if not naks:
            return
        self._given_back += naks
        if self._giving_back is None:
            self._giving_back = asyncio.ensure_future(self._give_back_later())

    async def _give_back_later(self) -> None:
        while self._given_back:
            await asyncio.sleep(max(self._expires_at + _GRACE - time.monotonic(), 0.0))
            naks, self._given_back = self._given_back, []
            naks.sort(key=lambda nak: nak[0].metadata.sequence.stream)
            self._settler.record_all(naks)
            await self._settler.drain()
        self._giving_back = None

    def reset(self) -> None:
        """The connection was re-established: pull requests made before are gone."""
        self._requested = len(self._buffer)
        self._wake.set()

    async def _write(self, settled: list[tuple[Msg, bytes]]) -> None:
        nc = self._nc
        assert nc is not None  # a delivery exists only after _open
        await fast_path.reply_all(nc, [(msg.reply, payload) for msg, payload in settled])

    async def _open(self) -> None:
        self._nc, self._pull_subject = await self._attach(False)
        self._reply = self._nc.new_inbox()
        with self._errors.mapping("subscribing to its inbox"):
            inbox = await self._nc.subscribe(self._reply, cb=self._on_message)
        if self._closed:  # aclose() ran meanwhile and found nothing to unsubscribe
            await inbox.unsubscribe()
            raise ClosedError("the subscription was closed")
        self._inbox = inbox
        self._keeping = asyncio.ensure_future(self._keep_in_progress())

    async def _keep_in_progress(self) -> None:
        """Every third of ``ack_wait``, report in progress the deliveries unsettled for that
        long and the messages received and not handed out yet (the consumer loop was busy),
        until every delivery is settled after :meth:`aclose`, or the transport closes
        (:meth:`shutdown` cancels this)."""
        every = self._in_progress_every
        while not (self._closed and not self._unsettled):
            await asyncio.sleep(every)  # the server's ack timer, not synchronisation
            due = time.monotonic() - every
            held = [(msg, _IN_PROGRESS) for msg in self._buffer if msg.reply]
            for delivery in self._unsettled:  # the oldest first
                if delivery._received > due:
                    break
                held.append((delivery._msg, _IN_PROGRESS))
            self._settler.record_all(held)

    async def _attach_again(self) -> None:
        _log.warning("group %r on %r was dropped; it starts again", self.group, self.topic)
        self._gone = False
        self._nc, _ = await self._attach(True)

    async def _on_message(self, msg: Msg) -> None:
        self._buffer.append(msg)
        self._wake.set()

    def _take(self) -> list[NatsDelivery]:
        received, self._buffer = self._buffer, []
        batch: list[NatsDelivery] = []
        start = self._topic_start
        now = time.monotonic()
        for msg in received:
            if msg.reply:
                message = decode(msg.subject[start:], msg.data, msg.headers)
                batch.append(NatsDelivery(self, msg, message, now))
                self._requested -= 1
            else:
                self._on_status(msg)
        self._requested = max(0, self._requested)
        self._unsettled.update(dict.fromkeys(batch))
        return batch

    def _on_status(self, msg: Msg) -> None:
        """A pull request ended (408 expired, 409 refused or the consumer went away)."""
        headers = msg.headers or {}
        pending = headers.get("Nats-Pending-Messages")
        if pending is not None:
            self._requested = max(0, self._requested - int(pending))
        elif headers.get("Status") in ("408", "409"):
            self._requested = 0  # how much of which request ended is unknown: ask afresh
            if headers.get("Description") == "Consumer Deleted":
                self._gone = True

    def _room(self) -> int:
        return self._prefetch - self._requested - len(self._unsettled)

    async def _pull(self) -> None:
        room = self._room()
        if self._closed or room <= 0 or (self._requested > 0 and room < self._low_water):
            return
        nc = self._nc
        assert nc is not None
        self._requested += room
        self._expires_at = time.monotonic() + self._expires
        body = b'{"batch":%d,"expires":%d}' % (room, int(self._expires * 1e9))
        try:
            with self._errors.mapping("asking for messages"):
                await nc.publish(self._pull_subject, body, reply=self._reply)
        except TidingsError:
            self._requested -= room
            raise

    async def _wait(self) -> None:
        """Until a message, a status or a settle arrives, or the pull requests expired."""
        self._wake.clear()
        if self._buffer or self._closed:
            return
        remaining = None
        if self._requested > 0:
            remaining = self._expires_at + _GRACE - time.monotonic()
            if remaining <= 0:
                # The server's 408 for the expired requests never came (lost in a reconnect).
                self._requested = 0
                return
        try:
            async with asyncio.timeout(remaining):
                await self._wake.wait()
        except TimeoutError:
            pass
