"""Limits that keep one process bounded: message size, per-topic caches."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest
from events import UserSignedUp

import tidings
from tidings import Bus


async def test_a_message_past_the_limit_is_refused_at_publish(tmp_path: Path) -> None:
    bus = Bus(f"sqlite:///{tmp_path}/x.db", max_message_size=200)
    handled: list[int] = []
    small_one = asyncio.Event()

    def record(event: UserSignedUp) -> None:
        handled.append(event.user_id)
        small_one.set()

    bus.subscribe(UserSignedUp, record)
    async with bus:
        with pytest.raises(tidings.MessageTooLarge) as refused:
            await bus.publish(UserSignedUp(1, "x" * 500))
        with pytest.raises(tidings.MessageTooLarge):
            await bus.publish_many([UserSignedUp(2, "y"), UserSignedUp(3, "z" * 500)])
        await bus.publish(UserSignedUp(4, "small"))
        await asyncio.wait_for(small_one.wait(), 10)
    assert refused.value.limit == 200
    assert refused.value.size > 500
    assert handled == [4]  # nothing of the refused publishes was sent


async def test_a_message_past_the_limit_from_another_producer_is_dead_lettered(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    producer = Bus(url, max_message_size=None)
    consumer = Bus(url, max_message_size=1000)
    handled: list[int] = []
    second = asyncio.Event()

    async def record(event: UserSignedUp) -> None:
        handled.append(event.user_id)
        second.set()

    consumer.subscribe(UserSignedUp, record, group="g")
    async with producer, consumer:
        await producer.publish(UserSignedUp(1, "x" * 5000))
        await producer.publish(UserSignedUp(2, "fine"))
        await asyncio.wait_for(second.wait(), 10)  # handled in order: the first is settled
        (letter,) = await consumer.dead_letters.list()
    assert handled == [2]
    assert letter.error_type == "tidings.errors.MessageTooLarge"
    assert letter.attempts == 1  # never retried
    assert len(letter.data) > 5000  # kept as it came


async def test_many_distinct_topics_do_not_grow_the_process() -> None:
    bus = Bus()
    bus.subscribe("tenant.*", lambda e: None, group="audit")

    async def publish(start: int, count: int) -> None:
        for n in range(start, start + count):
            await bus.publish({"n": n}, topic=f"tenant.t{n}")

    async with bus:
        await publish(0, 10_000)  # warm up: caches at their bound
        await bus.drain()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await publish(10_000, 40_000)
        await bus.drain()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    assert grown < 3_000_000, f"{grown:,} bytes kept for 40,000 topics"
