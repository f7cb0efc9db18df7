"""Dead letters on Kafka: the records of one topic (``tidings.dead-letters`` by default).

Each letter is a record whose key is the letter's id and whose value is the letter as JSON.
Removing a letter appends a tombstone (same key, null value); listing reads the topic from its
start to its current end, applying tombstones, so the topic holds the store's whole history and
can be compacted by Kafka (``cleanup.policy=compact``) without changing what it lists. Reads cost
one pass over the topic: fine for a dead-letter queue, which is meant to stay short.

Wildcard subscriptions never match this topic. Dead letters are as durable as the brokers keep
the topic.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from tidings.dead_letters import PAGE_SIZE, DeadLetter, decode_letter, page_of
from tidings.errors import NotFound
from tidings.transports.kafka.options import KafkaOptions
from tidings.transports.kit.errors import ErrorMap

__all__ = ["KafkaDeadLetterStore"]

_encode = msgspec.json.Encoder().encode


class KafkaDeadLetterStore:
    """The dead letters of a Kafka transport, kept in a topic on the same brokers.

    Safe to call concurrently: each read uses its own short-lived consumer (no group).
    ``remove`` of one letter by two callers at once may count it twice. Writes go through the
    transport's started producer (``producer()``) after ``prepare(topic)``.
    """

    def __init__(
        self,
        options: KafkaOptions,
        errors: ErrorMap,
        *,
        producer: Callable[[], Awaitable[Any]],
        prepare: Callable[[str], Awaitable[None]],
    ) -> None:
        self._options = options
        self._errors = errors
        self._producer = producer
        self._prepare = prepare
        self.topic = options.dead_letter_topic
        self._name = f"Kafka dead letters {self.topic!r}"

    async def add(self, letter: DeadLetter) -> None:
        """Append ``letter``; returns once the brokers stored it."""
        await self._send(letter.id, _encode(letter))

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        """Letters (of one original ``topic`` when given), oldest failure first; each page
        reads the whole topic."""
        letters = sorted((await self._read()).values(), key=lambda d: (d.failed_at, d.id))
        return page_of(letters, topic=topic, limit=limit, after=after)

    async def get(self, letter_id: str) -> DeadLetter:
        try:
            return (await self._read())[letter_id]
        except KeyError:
            raise NotFound(f"no dead letter with id {letter_id!r}") from None

    async def remove(self, letter_ids: Sequence[str]) -> int:
        """Append a tombstone for each of ``letter_ids`` that exists; returns how many did."""
        existing = (await self._read()).keys() & set(letter_ids)
        for letter_id in existing:
            await self._send(letter_id, None)
        return len(existing)

    async def _send(self, letter_id: str, value: bytes | None) -> None:
        producer = await self._producer()
        await self._prepare(self.topic)
        with self._errors.mapping("writing a dead letter"):
            await producer.send_and_wait(self.topic, value, key=letter_id.encode())

    async def _read(self) -> dict[str, DeadLetter]:
        """Every letter not removed, by id, reading the topic from its start to its end."""
        options = self._options
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            # no group, so no committed offsets: every assigned partition is read from its start
            # (seek_to_beginning would race with the default reset to the end)
            auto_offset_reset="earliest",
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            **options.client_settings(),
        )
        try:
            with self._errors.mapping("reading dead letters"):
                await consumer.start()
                return await self._scan(consumer)
        finally:
            with suppress(Exception):
                await consumer.stop()

    async def _scan(self, consumer: Any) -> dict[str, DeadLetter]:
        letters: dict[str, DeadLetter] = {}
        await consumer.topics()  # refreshes the metadata partitions_for_topic answers from
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            return letters
        tps = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign(tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in fetched.values():
                for record in records:
                    if record.key is None:
                        continue
                    letter_id = record.key.decode()
                    if record.value is None:
                        letters.pop(letter_id, None)
                        continue
                    letters[letter_id] = decode_letter(letter_id, record.value, self._name)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return letters
