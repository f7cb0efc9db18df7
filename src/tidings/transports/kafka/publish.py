"""Publishing to Kafka: records appended to one batch per partition, concurrent publishes sharing
batches, one batch in flight per partition.

aiokafka's ``send`` costs several times more per record than appending to a batch, and its
``send_batch`` spins when several callers queue batches for one partition at once. So this module
keeps the queue itself: a partition's batches wait here while one is in flight, the newest one
open to the records of whoever publishes next. Each publish waits for the batches holding its
records. Records of one partition are stored in the order they were appended.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import murmur2

from tidings.message import Message
from tidings.transports.kafka.wire import record_headers

__all__ = ["Publisher"]


class _Lane:
    """A partition's batches not yet sent, oldest first; the last one takes more records."""

    __slots__ = ("batches", "sending")

    def __init__(self) -> None:
        self.batches: deque[tuple[Any, asyncio.Future[None]]] = deque()
        self.sending = False


class Publisher:
    """Turns messages into records of an aiokafka producer's batches and sends them.

    A message's key picks its partition with Kafka's default partitioner (murmur2, as the Java
    client does), so other clients producing with the same key hit the same partition. Keyless
    messages of one call go to one partition, the next call's to the next one.
    """

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._spread = itertools.count()
        self._senders: set[asyncio.Task[None]] = set()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Return once every record of ``messages`` is stored; raises the client's error."""
        producer = self._producer
        partitions = sorted(await producer.partitions_for(topic))
        count = len(partitions)
        keyless = partitions[next(self._spread) % count]
        lanes = self._lanes
        waits: set[asyncio.Future[None]] = set()
        touched: dict[int, _Lane] = {}
        current = -1
        batches: deque[tuple[Any, asyncio.Future[None]]] = deque()
        batch: Any = None
        # No await from here to the sends: records enter the open batches in call order.
        for message in messages:
            key = message.key
            if key is None:
                key_bytes = None
                partition = keyless
            else:
                key_bytes = key.encode()
                partition = partitions[(murmur2(key_bytes) & 0x7FFFFFFF) % count]
            if partition != current:  # another lane: find its open batch
                current = partition
                lane = touched.get(partition)
                if lane is None:
                    lane = lanes.get((topic, partition))
                    if lane is None:
                        lane = lanes[topic, partition] = _Lane()
                    touched[partition] = lane
                batches = lane.batches
                batch, done = batches[-1] if batches else self._open(batches)
                waits.add(done)
            timestamp = int(message.timestamp * 1000)
            headers = record_headers(message)
            while (
                batch.append(
                    key=key_bytes, value=message.data, timestamp=timestamp, headers=headers
                )
                is None
            ):  # full: it waits to be sent; an empty batch takes any one record
                batch, done = self._open(batches)
                waits.add(done)
        idle = [(partition, lane) for partition, lane in touched.items() if not lane.sending]
        for _, lane in idle:
            lane.sending = True
        if len(touched) == 1 and idle:
            # An idle lane's oldest batch holds only this call's records: sent in this Task,
            # not a new one, which is all a lone publish waits for.
            await self._send_first(topic, *idle[0])
        else:
            for partition, lane in idle:
                self._start(topic, partition, lane)
        if not all(done.done() for done in waits):
            # asyncio.wait, not gather: a cancelled publisher must not cancel shared batches
            await asyncio.wait(waits)
        for done in waits:
            done.result()

    def _open(self, batches: deque[tuple[Any, asyncio.Future[None]]]) -> tuple[Any, Any]:
        opened = (self._producer.create_batch(), asyncio.get_running_loop().create_future())
        batches.append(opened)
        return opened

    def _start(self, topic: str, partition: int, lane: _Lane) -> None:
        """Send the lane's batches in a Task of their own."""
        sender = asyncio.create_task(self._send(topic, partition, lane))
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

    async def _send_first(self, topic: str, partition: int, lane: _Lane) -> None:
        """Send the lane's oldest batch, then leave those queued meanwhile to a sender Task."""
        try:
            await self._send_batch(topic, partition, *lane.batches.popleft())
        finally:
            if lane.batches:
                self._start(topic, partition, lane)
            else:
                lane.sending = False

    async def _send(self, topic: str, partition: int, lane: _Lane) -> None:
        """Send the lane's batches one after another until none is left."""
        batches = lane.batches
        try:
            while batches:
                await self._send_batch(topic, partition, *batches.popleft())
        finally:
            lane.sending = False

    async def _send_batch(
        self, topic: str, partition: int, batch: Any, done: asyncio.Future[None]
    ) -> None:
        """Send ``batch`` and wait until it is stored; ``done`` tells its publishers."""
        try:
            await (await self._producer.send_batch(batch, topic, partition=partition))
        except Exception as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)
