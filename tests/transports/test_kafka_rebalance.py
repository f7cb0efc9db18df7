"""Kafka keys that move between members while a member holds a backlog of them, and partitions
that share one member: a key never runs on two members at once, and one busy key does not keep
another partition's messages waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable

from aiokafka.partitioner import murmur2
from kafka_conftest import kafka_url, tansu  # noqa: F401  # fixtures

from tidings.bus import Bus
from tidings.message import Message

TIMEOUT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def keys_on_partitions(count: int, partitions: int) -> list[str]:
    """One key for each of ``count`` partitions (of ``partitions``), as Kafka places keys."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        key = f"key-{n}"
        found.setdefault((murmur2(key.encode()) & 0x7FFFFFFF) % partitions, key)
        n += 1
    return [found[p] for p in sorted(found)]


class Handled:
    """Messages handled per key (``n`` header), and how often a key ran twice at once."""

    def __init__(self, work: Callable[[str], float]) -> None:
        self._work = work
        self.count: Counter[str] = Counter()
        self.seen: set[tuple[str, int]] = set()
        self.overlaps = 0
        self._running: Counter[str] = Counter()
        self._changed = asyncio.Event()

    async def handle(self, message: Message) -> None:
        key = message.key or ""
        if self._running[key]:
            self.overlaps += 1
        self._running[key] += 1
        try:
            await asyncio.sleep(self._work(key))  # the handler's work
        finally:
            self._running[key] -= 1
        self.count[key] += 1
        self.seen.add((key, int(message.headers["n"])))
        self._changed.set()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {self.count}") from None


async def publish(bus: Bus, topic: str, keys: list[str], each: int) -> None:
    await bus.publish_many(
        [Message("test.item", b"{}", {"n": str(n)}, key) for n in range(each) for key in keys],
        topic=topic,
    )


async def test_a_key_never_runs_on_two_members_when_one_joins(kafka_url: str) -> None:  # noqa: F811
    """The first member holds far more of each key than it can handle before the rebalance's
    ``drain_timeout``; the partitions that move go without their waiting messages, which the new
    owner handles: every message is handled, no key runs on both members at once."""
    url = f"{kafka_url}&partitions=4&drain_timeout=0.2"
    topic, group = unique("kafka.join"), unique("group")
    keys, each = keys_on_partitions(4, 4), 40
    handled = Handled(lambda _: 0.1)
    first, second = Bus(url), Bus(url)
    for bus in (first, second):
        bus.subscribe(topic, handled.handle, group=group, ordered=True, concurrency=8)
    async with first:
        await publish(first, topic, keys, each)
        await handled.until(lambda: len(handled.seen) >= 8, "the first member to start")
        async with second:
            await handled.until(lambda: len(handled.seen) == len(keys) * each, "every message")
    assert handled.overlaps == 0, "a key ran on two members at once"


async def test_a_busy_key_does_not_hold_up_another_partition(kafka_url: str) -> None:  # noqa: F811
    """A backlog of one slow key fills what a member fetches; a message on another partition is
    still handled long before that backlog is."""
    url = f"{kafka_url}&partitions=2"
    topic, group = unique("kafka.busy"), unique("group")
    busy, other = keys_on_partitions(2, 2)
    handled = Handled(lambda key: 0.02 if key == busy else 0.0)
    bus = Bus(url)
    bus.subscribe(topic, handled.handle, group=group, ordered=True, concurrency=4)
    async with bus:
        await publish(bus, topic, [busy], 200)
        await handled.until(lambda: handled.count[busy] >= 1, "the busy key to start")
        await publish(bus, topic, [other], 1)
        await handled.until(lambda: handled.count[other] == 1, "the other partition's message")
        assert handled.count[busy] < 100, "it waited for the busy key's backlog"
