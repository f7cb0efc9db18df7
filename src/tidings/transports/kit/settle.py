"""Acks and nacks recorded now and written to the broker in bulk, the same way for every broker.

A consumer settles one delivery at a time; a broker round trip per settlement would cap it at a
few thousand messages a second. :class:`Settler` records each settlement and writes everything
recorded so far in one batch on the next loop turn, one batch in flight at a time, so a busy
consumer settles hundreds of messages per round trip and an idle one waits for no timer.

A batch that cannot be written is never a lost message: the broker delivers what was not settled
again (at-least-once). What a failed write means is the broker's to say, through ``transient``:
those errors keep the batch and try again after a capped pause (the connection is coming back);
any other error gives the batch up, logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["Settler"]

T = TypeVar("T")

logger = logging.getLogger("tidings.transports")

_FIRST_PAUSE = 0.05
_LAST_PAUSE = 2.0


class Settler(Generic[T]):
    """Settlements of one subscription (or channel), written by ``send(batch)`` in bulk.

    ``name`` says whose settlements they are in the log. ``transient`` are the exceptions of a
    write that is worth trying again. After :meth:`close` a write is tried once and later
    records are ignored (the subscription is gone; the broker redelivers).
    """

    __slots__ = ("_closed", "_flushing", "_name", "_pending", "_send", "_transient")

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[None]],
        *,
        name: str,
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._send = send
        self._name = name
        self._transient = transient
        self._pending: list[T] = []
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Recorded settlements not yet written."""
        return len(self._pending)

    def record(self, item: T) -> None:
        """Record one settlement; it is written on the next loop turn (or after the batch being
        written now)."""
        if self._closed:
            return
        self._pending.append(item)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    def record_all(self, items: Iterable[T]) -> None:
        for item in items:
            self.record(item)

    async def drain(self) -> None:
        """Return once everything recorded so far was written or given up."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def close(self) -> None:
        """Write what is recorded (one try for each batch from now on); ignore later records."""
        self._closed = True
        await self.drain()

    async def _flush(self) -> None:
        pause = 0.0
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._send(batch)
                    pause = 0.0
                except self._transient as exc:
                    if self._closed:
                        self._give_up(len(batch), exc)
                        continue
                    self._pending[:0] = batch
                    pause = min(max(pause * 2, _FIRST_PAUSE), _LAST_PAUSE)
                    await asyncio.sleep(pause)  # back off while the broker comes back
                except Exception as exc:  # the broker redelivers: at-least-once holds
                    self._give_up(len(batch), exc)
        finally:
            self._flushing = None

    def _give_up(self, count: int, exc: BaseException) -> None:
        logger.warning(
            "%s: could not settle %d deliveries, they come again: %r", self._name, count, exc
        )
