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

A rebalance that takes partitions away withdraws what this member fetched from them and no
handler took yet (the consume loop skips it: :meth:`KafkaDelivery.start`), waits (up to
``drain_timeout``) until what handlers took is settled, and commits it, before the group hands
them on: their next owner starts where this one finished, so a key's messages keep their order
across the move and never run on two members at once. What is still unsettled after that wait is
delivered again to the next owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import ConsumerStoppedError

from tidings.message import Message
from tidings.transports.kafka.commits import Committer
from tidings.transports.kafka.options import KafkaOptions
from tidings.transports.kafka.partitions import KafkaDelivery, Partition
from tidings.transports.kafka.topics import regex_for
from tidings.transports.kafka.wire import from_record
from tidings.transports.kit.errors import ErrorMap

__all__ = ["KafkaDelivery", "KafkaSubscription"]

_log = logging.getLogger("tidings.transports.kafka")
_POLL_MS = 1000


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned fetch's outcome as seen, so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


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
        self.publish_again = publish
        self._forget = forget
        self._prefetch = prefetch
        self._consumer: Any = None
        self._committer: Committer | None = None
        self._partitions: dict[Any, Partition] = {}
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
            fetch = asyncio.ensure_future(self._fetch(consumer, room))
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

    async def _fetch(self, consumer: Any, room: int) -> dict[Any, list[Any]]:
        """At most ``room`` records, from the partitions below their share of ``prefetch`` if
        they have any at hand. aiokafka fills a fetch from one partition first, so a slow key's
        backlog would otherwise take all the room and keep the other partitions waiting."""
        assigned = consumer.assignment()
        share = -(-self._prefetch // max(len(assigned), 1))
        full = {tp for tp, p in self._partitions.items() if p.unsettled >= share}
        others = [tp for tp in assigned if tp not in full] if full else []
        if others:
            fetched: dict[Any, list[Any]] = await consumer.getmany(*others, max_records=room)
            if fetched:
                return fetched
        return await consumer.getmany(timeout_ms=_POLL_MS, max_records=room)  # type: ignore[no-any-return]

    def _deliveries(self, fetched: dict[Any, list[Any]]) -> list[KafkaDelivery]:
        batch: list[KafkaDelivery] = []
        partitions = self._partitions
        for tp, records in fetched.items():
            partition = partitions.get(tp)
            if partition is None:
                assert self._committer is not None  # set when the consumer started
                partition = partitions[tp] = Partition(self, tp, self._committer)
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

    def partitions(self) -> frozenset[int]:
        """The partitions assigned to it now (of every topic, for a pattern)."""
        consumer = self._consumer
        if consumer is None or self.closed:
            return frozenset()
        return frozenset(tp.partition for tp in consumer.assignment())

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
        """Called by aiokafka before the group moves ``tps``: withdraw what was handed out of
        them and not started, wait (up to ``drain_timeout``) until what was started is settled,
        stop recording their settlements, and commit what was recorded while they are still
        ours."""
        leaving = [self._partitions.pop(tp) for tp in tps if tp in self._partitions]
        for partition in leaving:
            partition.withdraw()
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
