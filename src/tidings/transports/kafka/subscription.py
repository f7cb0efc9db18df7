"""One member of a Kafka consumer group: batches of deliveries, offsets committed after handling.

Kafka remembers one offset per partition and group, so a message is committed by committing the
offset after it, which also commits everything before it. Handlers finish out of order when the
consumer loop runs several at once; each partition therefore keeps its deliveries in offset order
and commits only up to the oldest one not yet settled (:mod:`~tidings.transports.kafka.commits`).
A crash redelivers that one and, possibly, later ones that were handled already (at least once).

``nack(delay)``: Kafka cannot redeliver one message, so after the delay the message is published
again to its topic with the next attempt number (header ``tidings-attempt``) and addressed to this
group (``tidings-replay-group``: other groups skip it). The original stays uncommitted until that
copy is stored, so a crash during the delay delivers the original again. The copy lands at the
end of its partition: it comes after messages of the same key published meanwhile.

A rebalance that takes partitions away waits (up to ``drain_timeout``) until what this member
handed out of them is settled, and commits it, before the group hands them on: their next owner
starts where this one finished, so a key's messages keep their order across the move. What is
still unsettled after that wait is delivered again to the next owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import ConsumerStoppedError

from tidings.dead_letters import REPLAY_GROUP_HEADER
from tidings.errors import ClosedError
from tidings.message import Message
from tidings.transports.kafka.commits import Committer
from tidings.transports.kafka.options import KafkaOptions
from tidings.transports.kafka.topics import regex_for
from tidings.transports.kafka.wire import from_record
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.wire import ATTEMPT

__all__ = ["KafkaDelivery", "KafkaSubscription"]

_log = logging.getLogger("tidings.transports.kafka")
_POLL_MS = 1000
_FIRST_BACKOFF = 0.1
_BACKOFF_CAP = 5.0
"""Most seconds between tries to publish a nacked message again."""


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
            partition.released()
            partition.advance()

    async def nack(self, delay: float = 0.0) -> None:
        if not self.settled:
            self.settled = True
            partition = self._partition
            subscription = partition.subscription
            partition.released()
            # a closing member gives the message back by leaving it uncommitted
            if partition.live and not subscription.closed:
                partition.retry_later(self, delay)


class _Partition:
    """The deliveries of one assigned partition not yet committable, oldest first."""

    __slots__ = (
        "_idle",
        "committer",
        "live",
        "pending",
        "retries",
        "subscription",
        "tp",
        "unsettled",
    )

    def __init__(self, subscription: KafkaSubscription, tp: Any, committer: Committer) -> None:
        self.subscription = subscription
        self.tp = tp
        self.committer = committer
        self.pending: deque[KafkaDelivery] = deque()
        self.retries: set[asyncio.Task[None]] = set()
        self.live = True
        self.unsettled = 0
        """Deliveries handed out and neither acked nor nacked."""
        self._idle: asyncio.Future[None] | None = None

    def released(self) -> None:
        """One of its deliveries was settled."""
        self.unsettled -= 1
        self.subscription.released()
        idle = self._idle
        if idle is not None and self.unsettled <= 0 and not idle.done():
            idle.set_result(None)

    async def settled(self) -> None:
        """Return once every delivery handed out of this partition is settled."""
        if self.unsettled > 0:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    def advance(self) -> None:
        """Make the offset after the settled head of ``pending`` the next one to commit."""
        pending = self.pending
        if not pending[0].done:
            return
        last = pending.popleft()
        while pending and pending[0].done:
            last = pending.popleft()
        if self.live:
            self.committer.record(self.tp, last.offset + 1)

    def retry_later(self, delivery: KafkaDelivery, delay: float) -> None:
        task = asyncio.create_task(self._retry(delivery, delay))
        self.retries.add(task)
        task.add_done_callback(self.retries.discard)

    async def _retry(self, delivery: KafkaDelivery, delay: float) -> None:
        """Publish ``delivery``'s message again after ``delay``, trying until it is stored (or
        the transport closed), whatever goes wrong: until then its partition commits nothing
        past it."""
        await asyncio.sleep(delay)
        group = self.subscription.group
        again = delivery.message.with_headers(
            {ATTEMPT: str(delivery.attempt + 1), REPLAY_GROUP_HEADER: group}
        )
        backoff = 0.0
        while True:
            try:
                await self.subscription._publish(self.tp.topic, [again])
                break
            except ClosedError:
                return  # the original stays uncommitted: the group gets it again
            except Exception as exc:
                if not backoff:
                    _log.warning(
                        "publishing %s again for group %r failed, trying again until it works: %r",
                        again.id,
                        group,
                        exc,
                    )
                backoff = min(max(backoff * 2, _FIRST_BACKOFF), _BACKOFF_CAP)
                await asyncio.sleep(backoff)
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
    The first batch, once the member started (after an error, maybe), is empty.

    At most ``prefetch`` deliveries are handed out and not yet settled at any time. ``aclose``
    stops fetching at once; the member stays in its group until the deliveries handed out are
    settled (at most ``drain_timeout`` seconds, see :meth:`wait_closed`), commits, and leaves.
    Deliveries not settled by then, nacked while closing, or nacked and still waiting for their
    delay come again to the group, with their attempt unchanged.

    The transport hands it what it needs of it: ``prepare(topic)`` (check the name, create the
    topic), ``publish(topic, messages)`` (nacked messages), and ``forget(self)`` once it left
    its group. Raises ValueError at once for a name Kafka cannot hold.
    """

    def __init__(
        self,
        topic: str,
        group: str,
        prefetch: int,
        *,
        options: KafkaOptions,
        errors: ErrorMap,
        prepare: Callable[[str], Awaitable[None]],
        publish: Callable[[str, Sequence[Message]], Awaitable[None]],
        forget: Callable[[KafkaSubscription], None],
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self.topic = topic
        self.group = group
        self.closed = False
        self._regex = regex_for(topic, exclude=options.dead_letter_topic)
        self._options = options
        self._errors = errors
        self._prepare = prepare
        self._publish = publish
        self._forget = forget
        self._prefetch = prefetch
        self._consumer: Any = None
        self._committer: Committer | None = None
        self._partitions: dict[Any, _Partition] = {}
        self._outstanding = 0
        self._room: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._finisher: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    def __aiter__(self) -> KafkaSubscription:
        return self

    async def __anext__(self) -> Sequence[KafkaDelivery]:
        consumer = self._consumer
        if consumer is None:
            await self._started()
            # Started: a consumer restarting after a failure runs again, though no message may
            # come for a long while (or it would read as restarting until then).
            return []
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
            with self._errors.mapping(f"fetching {self.topic!r}"):
                try:
                    fetched = fetch.result()
                except ConsumerStoppedError:
                    break
            if fetched:
                return self._deliveries(fetched)
        raise StopAsyncIteration

    def _deliveries(self, fetched: dict[Any, list[Any]]) -> list[KafkaDelivery]:
        batch: list[KafkaDelivery] = []
        partitions = self._partitions
        for tp, records in fetched.items():
            partition = partitions.get(tp)
            if partition is None:
                assert self._committer is not None  # set when the consumer started
                partition = partitions[tp] = _Partition(self, tp, self._committer)
            pending = partition.pending
            topic = tp.topic
            for record in records:
                message, attempt = from_record(topic, record.value, record.headers)
                delivery = KafkaDelivery(partition, record.offset, message, attempt)
                pending.append(delivery)
                batch.append(delivery)
            partition.unsettled += len(records)
        self._outstanding += len(batch)
        return batch

    async def _started(self) -> Any:
        async with self._start_lock:
            if self.closed:
                raise StopAsyncIteration
            if self._consumer is None:
                self._stopped = asyncio.get_running_loop().create_future()
                consumer = await self._connect()
                self._committer = Committer(
                    consumer, group=self.group, interval=self._options.commit_interval
                )
                self._consumer = consumer
            return self._consumer

    async def _connect(self) -> Any:
        options = self._options
        if self._regex is None:
            await self._prepare(self.topic)
        consumer = AIOKafkaConsumer(
            group_id=self.group,
            enable_auto_commit=False,
            # a new group reads the topic from its start (replays_history)
            auto_offset_reset="earliest",
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            session_timeout_ms=options.session_timeout_ms,
            # the group waits for a member finishing its revoked partitions' deliveries
            rebalance_timeout_ms=options.session_timeout_ms + int(options.drain_timeout * 1000),
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
            raise self._errors.error(exc, f"subscribing to {self.topic!r}") from exc
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

    async def revoked(self, tps: Any) -> None:
        """Called by aiokafka before the group moves ``tps``: wait (up to ``drain_timeout``)
        until what was handed out of them is settled, stop recording their settlements, and
        commit what was recorded while they are still ours."""
        leaving = [self._partitions.pop(tp) for tp in tps if tp in self._partitions]
        if leaving:
            with suppress(TimeoutError):
                async with asyncio.timeout(self._options.drain_timeout):
                    await asyncio.gather(*(partition.settled() for partition in leaving))
        for partition in leaving:
            partition.revoke()
        if self._committer is not None:
            await self._committer.flush(self._options.drain_timeout)

    async def aclose(self) -> None:
        """Stop fetching: the iteration ends now. Idempotent; see :meth:`wait_closed`."""
        async with self._start_lock:
            if self.closed:
                return
            self.closed = True
            if self._consumer is None:
                self._forget(self)
                return
            assert self._stopped is not None
            self._stopped.set_result(None)
            self._finisher = asyncio.create_task(self._finish())

    async def wait_closed(self) -> None:
        """Return once the member left its group (after :meth:`aclose`)."""
        if self._finisher is not None:
            await asyncio.shield(self._finisher)

    async def _finish(self) -> None:
        """Wait for the deliveries out (up to ``drain_timeout``), commit, leave the group.
        Never raises: what goes wrong is logged, and what was not committed comes again."""
        try:
            if self._outstanding > 0:
                self._drained = asyncio.get_running_loop().create_future()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._drained, self._options.drain_timeout)
            for partition in self._partitions.values():
                partition.revoke()
            self._partitions.clear()  # leaving revokes them again: nothing more to wait for
            assert self._committer is not None  # set with the consumer
            await self._committer.close()
            await self._consumer.stop()
        except Exception as exc:
            _log.warning("leaving group %r cleanly failed: %r", self.group, exc)
        finally:
            self._forget(self)
