"""Publishing to JetStream with pipelined acknowledgements.

Every message of a ``publish`` call goes out at once as a core NATS publish (``send``, see
:mod:`.fast_path`: it only appends to the connection's outgoing buffer, which the client's
flusher writes in bulk) whose reply subject names the call (``<inbox>.<call>``). JetStream
answers each one there after storing it, and one wildcard subscription counts the answers. The
call returns when every message was confirmed, so its latency is one round trip for the whole
batch rather than one per message (as ``JetStreamContext.publish`` would take).

Nothing is lost when the connection drops meanwhile: when no confirmation came for a while, the
whole call is sent again under a new reply subject, with the same ``Nats-Msg-Id`` per message,
so the stream stores each message once (within its duplicate window) and confirms each again.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nats.errors import OutboundBufferLimitError

from tidings.errors import ServiceUnavailable, TransportError
from tidings.message import Message
from tidings.topics import is_pattern
from tidings.transports.nats.fast_path import Send
from tidings.transports.nats.wire import headers_for

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

__all__ = ["Publisher"]

_CHUNK = 512
"""Messages handed to the connection's buffer at once."""
_WINDOW = 16_384
"""Messages of one call sent and not yet confirmed before sending waits for confirmations."""
_QUIET = 2.0
"""Seconds without any confirmation after which a call is sent again."""

_Prepared = list[tuple[bytes, dict[str, str], bytes]]
"""Each message's payload, headers and header block (:func:`.wire.headers_for`)."""


class _Batch:
    """Confirmations of one sending of a publish call."""

    __slots__ = ("confirmed", "error", "waiter", "wake_at")

    def __init__(self) -> None:
        self.confirmed = 0
        self.error: str | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.wake_at = 0

    def confirm(self, msg: Msg) -> None:
        self.confirmed += 1
        data = msg.data
        if not data or b'"error"' in data:
            self.error = self.error or _describe(msg)
        waiter = self.waiter
        if waiter is not None and self.confirmed >= self.wake_at and not waiter.done():
            waiter.set_result(None)

    async def until(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` messages are confirmed or ``timeout`` passed; whether they are."""
        if self.confirmed >= count:
            return True
        self.wake_at = count
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        # A plain timer, cheaper than asyncio.timeout on the path of every publish.
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        return self.confirmed >= count


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _describe(msg: Msg) -> str:
    if msg.headers and msg.headers.get("Status") == "503":
        return "no JetStream stream stores this subject"
    return f"JetStream rejected a message: {msg.data.decode(errors='replace')}"


class Publisher:
    """Sends messages to JetStream and waits for their confirmations. One per connection."""

    def __init__(self, nc: NATS, connected: asyncio.Event, timeout: float, send: Send) -> None:
        self._nc = nc
        self._send = send
        self._connected = connected
        self._timeout = timeout
        self._inbox = nc.new_inbox()
        self._calls = itertools.count()
        self._batches: dict[str, _Batch] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    async def open(self) -> None:
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_confirmation)

    async def drain(self) -> None:
        """Wait until no publish is in progress (each ends within the timeout)."""
        await self._idle.wait()

    async def publish(self, subject: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` on ``subject``; returns when JetStream confirmed every one.

        Raises ValueError (nothing sent) for a pattern or a message that cannot travel,
        TransportError when JetStream refused a message or did not confirm all of them within
        the timeout, ServiceUnavailable when the connection stayed down that long; nats-py's
        errors when the connection was closed.
        """
        if is_pattern(subject):
            raise ValueError(f"cannot publish to the pattern {subject!r}")
        if not messages:
            return
        limit = self._nc.max_payload
        prepared = [(message.data, *headers_for(message, limit)) for message in messages]
        deadline = time.monotonic() + self._timeout
        self._idle.clear()
        try:
            error = await self._until_confirmed(subject, prepared, deadline)
        finally:
            if not self._batches:
                self._idle.set()
        if error is not None:
            raise TransportError(f"{error} (subject {subject!r})")

    async def _until_confirmed(
        self, subject: str, prepared: _Prepared, deadline: float
    ) -> str | None:
        while True:
            # Sent again, the messages (same ids) get a new reply subject: counting starts over.
            reply = f"{self._inbox}.{next(self._calls)}"
            batch = self._batches[reply] = _Batch()
            try:
                if await self._send_all(batch, subject, reply, prepared, deadline):
                    return batch.error
            finally:
                del self._batches[reply]
            if time.monotonic() >= deadline:
                raise TransportError(
                    f"JetStream confirmed {batch.confirmed} of {len(prepared)} messages "
                    f"within {self._timeout:g}s"
                )

    async def _send_all(
        self, batch: _Batch, subject: str, reply: str, prepared: _Prepared, deadline: float
    ) -> bool:
        """Send and wait; False when confirmations stopped coming before all arrived."""
        for start in range(0, len(prepared), _CHUNK):
            if start > _WINDOW:
                await batch.until(start - _WINDOW, max(0.0, deadline - time.monotonic()))
            if not self._connected.is_set():
                await self._reconnected(deadline)
            try:
                await self._send(self._nc, subject, reply, prepared[start : start + _CHUNK])
            except OutboundBufferLimitError:
                break  # disconnected meanwhile with a full buffer: send again after the quiet
        while True:
            seen = batch.confirmed
            quiet = min(_QUIET, max(0.0, deadline - time.monotonic()))
            if await batch.until(len(prepared), quiet):
                return True
            if batch.confirmed == seen or time.monotonic() >= deadline:
                return False

    async def _reconnected(self, deadline: float) -> None:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._connected.wait()
        except TimeoutError:
            raise ServiceUnavailable(
                f"NATS stayed disconnected for {self._timeout:g}s while publishing"
            ) from None

    async def _on_confirmation(self, msg: Msg) -> None:
        batch = self._batches.get(msg.subject)
        if batch is not None:
            batch.confirm(msg)
