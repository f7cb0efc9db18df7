"""One member of a Kafka consumer group: batches of deliveries, offsets committed after handling.

Kafka remembers one offset per partition and group, so a message is committed by committing the
offset after it, which also commits everything before it. Handlers finish out of order when the
consumer loop runs several at once; each partition therefore keeps its deliveries in offset order
and commits only up to the oldest one not yet settled. A crash redelivers that one and, possibly,
later ones that were handled already (at least once).

``nack(delay)``: Kafka cannot redeliver one message, so after the delay the message is published
again to its topic with the next attempt number (header ``tidings-attempt``) and addressed to this
group (``tidings-replay-group``: other groups skip it). The original stays uncommitted until that
copy is stored, so a crash during the delay delivers the original again. The copy lands at the
end of its partition: it comes after messages of the same key published meanwhile.

Partitions taken away by a rebalance are committed as far as they are settled; their deliveries
still in progress are delivered again to the partition's new owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError

from tidings.deadletters import REPLAY_GROUP_HEADER
from tidings.errors import ClosedError, TransportError
from tidings.message import Message
from tidings.transports.kafka_protocol import checked, mapped
from tidings.transports.kit.wire import ATTEMPT, from_wire

if TYPE_CHECKING:
    from tidings.transports.kafka import KafkaTransport

__all__ = ["KafkaDelivery", "KafkaSubscription"]

_log = logging.getLogger(__name__)
_POLL_MS = 1000
_RETRY_BACKOFF_MAX = 5.0


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned fetch's outcome as seen, so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


class KafkaDelivery:
    """One record handed to one subscription. ``ack``/``nack`` are idempotent; only the first
    call counts."""

    __slots__ = ("_partition", "attempt", "done", "message", "offset", "settled")

    def __init__(self, partition: _Partition, offset: int, message: Message, attempt: int) -> None:
        self._partition = partition
        self.offset = offset
        self.message = message
        self.attempt = attempt
        self.settled = False
        """Acked or nacked: no longer counted against the prefetch limit."""
        self.done = False
        """May be committed: acked, or nacked and published again."""

    async def ack(self) -> None:
        if not self.settled:
            self.settled = self.done = True
            partition = self._partition
            partition.subscription.released()
            partition.advance()

    async def nack(self, delay: float = 0.0) -> None:
        if not self.settled:
            self.settled = True
            partition = self._partition
            subscription = partition.subscription
            subscription.released()
            # a closing member gives the message back by leaving it uncommitted
            if partition.live and not subscription.closed:
                partition.retry_later(self, delay)


class _Partition:
    """The deliveries of one assigned partition not yet committable, oldest first."""

    __slots__ = ("live", "pending", "retries", "subscription", "tp")

    def __init__(self, subscription: KafkaSubscription, tp: Any) -> None:
        self.subscription = subscription
        self.tp = tp
        self.pending: deque[KafkaDelivery] = deque()
        self.retries: set[asyncio.Task[None]] = set()
        self.live = True

    def advance(self) -> None:
        """Make the offset after the settled head of ``pending`` the next one to commit."""
        pending = self.pending
        if not pending[0].done:
            return
        last = pending.popleft()
        while pending and pending[0].done:
            last = pending.popleft()
        if self.live:
            self.subscription.commit_later(self.tp, last.offset + 1)

    def retry_later(self, delivery: KafkaDelivery, delay: float) -> None:
        task = asyncio.create_task(self._retry(delivery, delay))
        self.retries.add(task)
        task.add_done_callback(self.retries.discard)

    async def _retry(self, delivery: KafkaDelivery, delay: float) -> None:
        await asyncio.sleep(delay)
        again = delivery.message.with_headers(
            {ATTEMPT: str(delivery.attempt + 1), REPLAY_GROUP_HEADER: self.subscription.group}
        )
        backoff = 0.1
        while True:
            try:
                await self.subscription.transport.publish(self.tp.topic, [again])
                break
            except ClosedError:
                return  # the original stays uncommitted: the group gets it again
            except TransportError as exc:
                _log.warning("publishing %s again failed, retrying: %s", again.id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_BACKOFF_MAX)
        delivery.done = True
        self.advance()

    def revoke(self) -> None:
        """Forget this partition: later settlements are not committed, retries are dropped (the
        partition's next owner delivers those messages again)."""
        self.live = False
        for task in self.retries:
            task.cancel()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._subscription.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class KafkaSubscription:
    """Batches of deliveries for one (topic or pattern, group): a Kafka consumer group member.

    At most ``prefetch`` deliveries are handed out and not yet settled at any time. ``aclose``
    stops fetching at once; the member stays in its group until the deliveries handed out are
    settled (at most ``drain_timeout`` seconds, see :meth:`wait_closed`), commits, and leaves.
    Deliveries not settled by then, nacked while closing, or nacked and still waiting for their
    delay come again to the group, with their attempt unchanged.
    """

    def __init__(self, transport: KafkaTransport, topic: str, group: str, prefetch: int) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        options = transport.options
        self.transport = transport
        self.topic = topic
        self.group = group
        self.closed = False
        self._regex = checked(topic, exclude=options.dead_letter_topic)
        self._prefetch = prefetch
        self._consumer: Any = None
        self._partitions: dict[Any, _Partition] = {}
        self._offsets: dict[Any, int] = {}
        self._outstanding = 0
        self._room: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._dirty = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._finisher: asyncio.Task[None] | None = None
        self._commit_lock = asyncio.Lock()
        self._start_lock = asyncio.Lock()

    def __aiter__(self) -> KafkaSubscription:
        return self

    async def __anext__(self) -> Sequence[KafkaDelivery]:
        consumer = self._consumer or await self._started()
        stopped = self._stopped
        assert stopped is not None  # set when the consumer started
        while not self.closed:
            room = self._prefetch - self._outstanding
            if room <= 0:
                self._room = asyncio.get_running_loop().create_future()
                await asyncio.wait((self._room, stopped), return_when=asyncio.FIRST_COMPLETED)
                continue
            fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=_POLL_MS, max_records=room))
            await asyncio.wait((fetch, stopped), return_when=asyncio.FIRST_COMPLETED)
            if stopped.done():  # closed: what this fetch got stays uncommitted, it comes again
                fetch.cancel()
                fetch.add_done_callback(_retrieved)
                break
            try:
                fetched = fetch.result()
            except ConsumerStoppedError:
                break
            except KafkaError as exc:
                raise mapped(exc, f"fetching {self.topic!r}", self.transport.options.where) from exc
            if fetched:
                return self._deliveries(fetched)
        raise StopAsyncIteration

    def _deliveries(self, fetched: dict[Any, list[Any]]) -> list[KafkaDelivery]:
        batch: list[KafkaDelivery] = []
        partitions = self._partitions
        for tp, records in fetched.items():
            partition = partitions.get(tp)
            if partition is None:
                partition = partitions[tp] = _Partition(self, tp)
            pending = partition.pending
            topic = tp.topic
            for record in records:
                message, attempt = from_wire(topic, record.value, dict(record.headers))
                delivery = KafkaDelivery(partition, record.offset, message, attempt)
                pending.append(delivery)
                batch.append(delivery)
        self._outstanding += len(batch)
        return batch

    async def _started(self) -> Any:
        async with self._start_lock:
            if self.closed:
                raise StopAsyncIteration
            if self._consumer is None:
                self._stopped = asyncio.get_running_loop().create_future()
                self._consumer = await self._connect()
                self._committer = asyncio.create_task(self._commit_loop())
            return self._consumer

    async def _connect(self) -> Any:
        transport = self.transport
        options = transport.options
        if self._regex is None:
            await transport.prepare(self.topic)
        consumer = AIOKafkaConsumer(
            group_id=self.group,
            enable_auto_commit=False,
            # a new group reads the topic from its start (replays_history)
            auto_offset_reset="earliest",
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            session_timeout_ms=options.session_timeout_ms,
            heartbeat_interval_ms=options.heartbeat_interval_ms,
            **options.client_settings(),
        )
        try:
            await consumer.start()
            listener = _Rebalance(self)
            if self._regex is None:
                consumer.subscribe(topics=[self.topic], listener=listener)
            else:
                consumer.subscribe(pattern=self._regex, listener=listener)
        except Exception as exc:
            with suppress(Exception):
                await consumer.stop()
            raise mapped(exc, f"subscribing to {self.topic!r}", options.where) from exc
        return consumer

    def released(self) -> None:
        """One delivery was settled: make room for the next fetch."""
        self._outstanding -= 1
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        drained = self._drained
        if drained is not None and self._outstanding <= 0 and not drained.done():
            drained.set_result(None)

    def commit_later(self, tp: Any, offset: int) -> None:
        self._offsets[tp] = offset
        self._dirty.set()

    async def _commit_loop(self) -> None:
        """Commit at most once per ``commit_interval``, right away after a quiet spell."""
        interval = self.transport.options.commit_interval
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._commit()
            await asyncio.sleep(interval)

    async def _commit(self) -> None:
        async with self._commit_lock:  # one commit at a time: an older one never lands last
            offsets, self._offsets = self._offsets, {}
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # the group moved these partitions elsewhere; their new owner redelivers
                _log.info("offsets of %s not committed after a rebalance: %s", self.group, exc)
            except KafkaError as exc:
                _log.warning("committing offsets of %s failed, retrying: %s", self.group, exc)
                for tp, offset in offsets.items():
                    self._offsets.setdefault(tp, offset)
                self._dirty.set()

    async def revoked(self, tps: Any) -> None:
        """Called by aiokafka before the group moves ``tps``: commit them while still ours."""
        await self._commit()
        for tp in tps:
            partition = self._partitions.pop(tp, None)
            if partition is not None:
                partition.revoke()

    async def aclose(self) -> None:
        """Stop fetching: the iteration ends now. Idempotent; see :meth:`wait_closed`."""
        async with self._start_lock:
            if self.closed:
                return
            self.closed = True
            if self._consumer is None:
                self.transport.forget(self)
                return
            assert self._stopped is not None
            self._stopped.set_result(None)
            self._finisher = asyncio.create_task(self._finish())

    async def wait_closed(self) -> None:
        """Return once the member left its group (after :meth:`aclose`)."""
        if self._finisher is not None:
            await asyncio.shield(self._finisher)

    async def _finish(self) -> None:
        try:
            if self._outstanding > 0:
                self._drained = asyncio.get_running_loop().create_future()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._drained, self.transport.options.drain_timeout)
            if self._committer is not None:
                self._committer.cancel()
            for partition in self._partitions.values():
                partition.revoke()
            await self._commit()
            try:
                await self._consumer.stop()
            except KafkaError as exc:
                _log.warning("leaving group %s failed: %s", self.group, exc)
        finally:
            self.transport.forget(self)
