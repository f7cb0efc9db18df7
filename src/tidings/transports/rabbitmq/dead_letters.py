"""Dead letters kept on RabbitMQ: JSON records in a durable classic queue.

``add`` publishes a :class:`~tidings.dead_letters.DeadLetter` as JSON (message id = the letter's id,
persistent, confirmed). RabbitMQ has no way to read a queue without taking messages, so the other
operations *take* records one by one (``basic.get``, oldest first), look at them, and close their
channel when done: a classic queue puts every record taken and not acknowledged back in its
original place. ``remove`` acknowledges the records it deletes. A client that dies mid-way gives its
records back the same way, so nothing is lost or reordered.

While one client reads, the records it holds are invisible to others; so reads are serialised:
within the process by a lock, across processes by an exclusive consumer on the (auto-deleted)
queue ``<name>.lock``, which RabbitMQ releases when its channel closes, also on a crash. A reader
that finds the lock taken retries until ``reconnect_timeout`` passes, then raises TransportError.

Reading costs one round trip per record up to the one looked for: fine for the hundreds or
thousands of records a dead-letter queue should hold.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import msgspec
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity
from pamqp.commands import Basic

from tidings.dead_letters import PAGE_SIZE, DeadLetter, decode_letter
from tidings.errors import NotFound, ServiceUnavailable, TransportError
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.rabbitmq.publish import Publisher

if TYPE_CHECKING:
    from aiormq import Channel
    from aiormq.abc import DeliveredMessage

__all__ = ["RabbitMQDeadLetterStore"]

_log = logging.getLogger("tidings.transports.rabbitmq")

_encode = msgspec.json.Encoder().encode
_CLASSIC: dict[str, Any] = {
    "x-queue-type": "classic"
}  # quorum queues do not keep requeued records in place

Visit = Callable[["DeliveredMessage"], Awaitable[bool]]
"""Looks at one record; True stops the scan."""


class RabbitMQDeadLetterStore:
    """The dead-letter store of a RabbitMQ transport (one per transport). Safe for concurrent
    use; raises ServiceUnavailable while the broker is away, TransportError when it fails.

    ``open_channel()`` is a plain channel of the transport's connection for a short job (the
    caller closes it); ``reconnect_timeout`` bounds the wait for another reader's lock."""

    def __init__(
        self,
        queue: str,
        *,
        publisher: Publisher,
        open_channel: Callable[[], Awaitable[Channel]],
        errors: ErrorMap,
        reconnect_timeout: float,
    ) -> None:
        self._publisher = publisher
        self._open_channel = open_channel
        self._errors = errors
        self._reconnect_timeout = reconnect_timeout
        self.queue = queue
        self._name = f"RabbitMQ dead letters {queue!r}"
        self._lock_queue = f"{queue}.lock"
        self._lock = asyncio.Lock()
        self._declared = False

    async def add(self, letter: DeadLetter) -> None:
        """Store ``letter`` durably (confirmed by the broker) before returning. The queue is
        declared again if it went away (the broker returns a record it cannot route)."""
        await self._declare()
        props = Basic.Properties(
            delivery_mode=2,
            message_id=letter.id,
            message_type=letter.topic,
            content_type="application/json",
        )
        record = [_encode(letter)]
        try:
            await self._publisher.send([("", self.queue)], record, [props], mandatory=True)
        except TransportError as exc:
            if isinstance(exc, ServiceUnavailable):
                raise
            self._declared = False
            await self._declare()
            await self._publisher.send([("", self.queue)], record, [props], mandatory=True)

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        """Up to ``limit`` letters (of ``topic`` if given), oldest first; with ``after``, those
        behind the letter ``after`` in the queue (which takes the records up to it again)."""
        found: builtins.list[DeadLetter] = []
        passed = after is None
        if limit <= 0:
            return found

        async def visit(record: DeliveredMessage) -> bool:
            nonlocal passed
            if not passed:
                passed = record.header.properties.message_id == after
            elif topic is None or record.header.properties.message_type == topic:
                letter = _letter(record, self._name)
                if letter is not None:
                    found.append(letter)
            return len(found) >= limit

        await self._scan(visit)
        if not passed:
            raise NotFound(f"no dead letter with id {after!r}")
        return found

    async def get(self, letter_id: str) -> DeadLetter:
        """The letter with this id; raises NotFound."""
        found: builtins.list[DeadLetter] = []

        async def visit(record: DeliveredMessage) -> bool:
            if record.header.properties.message_id != letter_id:
                return False
            letter = _letter(record, self._name)
            if letter is not None:
                found.append(letter)
            return True

        await self._scan(visit)
        if not found:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return found[0]

    async def remove(self, letter_ids: Sequence[str]) -> int:
        """Delete these letters; returns how many existed."""
        wanted = set(letter_ids)
        removed = 0

        async def visit(record: DeliveredMessage) -> bool:
            nonlocal removed
            letter_id = record.header.properties.message_id
            if letter_id in wanted:
                await record.channel.basic_ack(cast(Basic.GetOk, record.delivery).delivery_tag or 0)
                wanted.discard(letter_id)
                removed += 1
            return not wanted

        if wanted:
            await self._scan(visit)
        return removed

    async def _declare(self) -> None:
        if self._declared:
            return
        channel = await self._open_channel()
        try:
            with self._errors.mapping(f"declaring {self.queue!r}"):
                await channel.queue_declare(self.queue, durable=True, arguments=_CLASSIC)
        finally:
            await channel.close()
        self._declared = True

    async def _scan(self, visit: Visit) -> None:
        """Take the records oldest first and show each to ``visit`` until it says stop or none
        is left; then close the channel, which puts back every record not acknowledged."""
        await self._declare()
        async with self._lock:
            channel = await self._locked_channel()
            try:
                with self._errors.mapping(f"reading {self.queue!r}"):
                    while True:
                        record = await channel.basic_get(self.queue)
                        if isinstance(record.delivery, Basic.GetEmpty) or await visit(record):
                            return
            finally:
                await channel.close()

    async def _locked_channel(self) -> Channel:
        """A channel holding the cross-process lock: an exclusive consumer on the lock queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_timeout
        pause = 0.01
        while True:
            channel = await self._open_channel()
            try:
                await channel.queue_declare(self._lock_queue, auto_delete=True)
                await channel.basic_consume(self._lock_queue, _ignore, exclusive=True)
                return channel
            except (ChannelAccessRefused, ChannelNotFoundEntity):
                # Another client reads (403), or its lock queue vanished as we bound it (404).
                await channel.close()
            except BaseException as exc:
                await channel.close()
                if isinstance(exc, Exception) and self._errors.handles(exc):
                    raise self._errors.error(exc, f"locking {self.queue!r}") from exc
                raise
            if loop.time() >= deadline:
                raise TransportError(
                    f"the dead letters in {self.queue!r} stayed locked by another client"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)


def _letter(record: DeliveredMessage, store: str) -> DeadLetter | None:
    """The letter ``record`` holds, its unreadable stand-in, or None for a record with no id."""
    letter_id = record.header.properties.message_id
    if letter_id is None:
        _log.warning("skipping a record of %s that has no message id: no dead letter", store)
        return None
    return decode_letter(letter_id, record.body, store)


async def _ignore(_: DeliveredMessage) -> None:
    """The lock queue never holds messages."""
