"""The soak (``make test-stress``): a Bus on each durable transport under a steady load for
``TIDINGS_SOAK_SECONDS`` (default 600) loses nothing, keeps its consumers running, and stays
within bounds of memory and (SQLite) disk.

A publisher sends ``RATE`` events a second, in bursts paced by the loop clock, to two groups.
Every ``FAIL_EVERY``-th event fails every attempt (retried, then dead-lettered); the one after it
fails its first attempt only (retried, then handled). Every few seconds the process's RSS, the
SQLite files' size and ``bus.health()`` are sampled. One JSON line per transport gives the
figures. Shorter runs: ``TIDINGS_SOAK_SECONDS=60 make test-stress``; one transport:
``.venv/bin/python -m pytest -m stress tests/transports/test_soak.py -k sqlite``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from brokers import delete_prefix, delete_streams
from kafka_conftest import kafka_url, tansu  # noqa: F401  # fixtures
from test_rabbitmq import amqp_namespace, exchange  # noqa: F401  # fixtures
from test_redis import unique_prefix
from test_sqlite_stress import on_disk

from tidings.bus import Bus
from tidings.codec import event
from tidings.dead_letters import PAGE_SIZE, DeadLetter, DeadLetterStore
from tidings.message import Message
from tidings.middleware.retry import Retry
from tidings.testing.receiver import PROBE_HEADER, TransportFactory, unique
from tidings.transports import from_url
from tidings.transports.nats import NatsOptions, NatsTransport
from tidings.transports.rabbitmq import RabbitMQOptions, RabbitMQTransport

pytestmark = pytest.mark.stress

SECONDS = float(os.environ.get("TIDINGS_SOAK_SECONDS", "600"))
RATE = 1000
"""Events a second, published in bursts of ``RATE // BURSTS`` (one transport call each)."""
BURSTS = 20
FAIL_EVERY = 200
"""Event ``n`` with ``n % FAIL_EVERY == 0`` always fails; ``== 1`` fails once."""
RETRY = Retry(max_attempts=3, initial_delay=0.05, jitter=False)
SAMPLE_EVERY = 5.0
DRAIN_SECONDS = 120.0
"""How long the consumers may take, after the last publish, to settle what is left."""
RSS_GROWTH = (0.10, 30 << 20)
"""The second half of the run may grow RSS by 10% of its size at half time, or 30 MB."""
SQLITE_BYTES = 64 << 20
NOTE = "x" * 60


@event("tidings.soak.order")
@dataclass(frozen=True)
class SoakOrder:
    n: int
    note: str


class Failing(Exception):
    """What the soak's handler raises for the events meant to fail."""


@dataclass
class Durable:
    """A transport under test: how to make it and, for SQLite, its database file."""

    name: str
    factory: TransportFactory
    path: Path | None = None


@pytest.fixture(params=["sqlite", "postgres", "nats", "kafka", "rabbitmq", "redis"])
def durable(request: pytest.FixtureRequest) -> Iterator[Durable]:
    """Each durable transport in a namespace of the test's own (the services' own fixtures,
    asked for only by the transport that needs them), cleaned up afterwards."""
    name, value = request.param, request.getfixturevalue
    if name == "sqlite":
        url = value("sqlite_url")
        yield Durable(name, lambda: from_url(url), Path(url.removeprefix("sqlite:///")))
    elif name == "postgres":
        url = f"{value('pg_dsn')}?schema={value('pg_schema')}"
        yield Durable(name, lambda: from_url(url))
    elif name == "kafka":
        url = value("kafka_url")
        yield Durable(name, lambda: from_url(url))
    elif name == "rabbitmq":
        options = RabbitMQOptions(value("amqp_url"), exchange=value("exchange"))
        yield Durable(name, lambda: RabbitMQTransport(options))
    elif name == "redis":
        redis_url, prefix = value("redis_url"), unique_prefix()
        yield Durable(name, lambda: from_url(f"{redis_url}?prefix={prefix}"))
        asyncio.run(delete_prefix(redis_url, prefix))
    else:
        nats_url, tag = value("nats_url"), uuid.uuid4().hex[:10]
        nats = NatsOptions.from_url(f"{nats_url}?stream=K{tag}&prefix=k{tag}")
        yield Durable(name, lambda: NatsTransport(nats))
        asyncio.run(delete_streams(nats_url, nats))


HANDLED, DEAD = 1, 2


class Tally:
    """One group's outcome per event number, a byte each, allocated up front: the record itself
    does not grow while the soak measures memory."""

    def __init__(self, capacity: int) -> None:
        self.outcome = bytearray(capacity)
        self.handled = self.dead = self.again = 0
        self.failed_once: set[int] = set()
        self.probed = asyncio.Event()
        self.changed = asyncio.Event()

    async def handle(self, value: object) -> None:
        if not isinstance(value, SoakOrder):
            self.probed.set()
            return
        n = value.n
        if n % FAIL_EVERY == 0:
            raise Failing(f"order {n} always fails")
        if n % FAIL_EVERY == 1 and n not in self.failed_once:
            self.failed_once.add(n)
            raise Failing(f"order {n} fails once")
        self.failed_once.discard(n)
        self.settle(n, HANDLED)

    def settle(self, n: int, outcome: int) -> None:
        if self.outcome[n]:
            self.again += 1  # delivered again after it was settled: at least once
            return
        self.outcome[n] = outcome
        if outcome == HANDLED:
            self.handled += 1
        else:
            self.dead += 1
        self.changed.set()

    async def until_settled(self, count: int) -> None:
        while self.handled + self.dead < count:
            self.changed.clear()
            await self.changed.wait()


class CountedDeadLetters:
    """Stores through ``store`` and tells ``added`` of each letter (nothing kept here)."""

    def __init__(self, store: DeadLetterStore, added: Callable[[DeadLetter], None]) -> None:
        self.store, self._added = store, added

    async def add(self, letter: DeadLetter) -> None:
        await self.store.add(letter)
        self._added(letter)

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> list[DeadLetter]:
        return await self.store.list(topic=topic, limit=limit, after=after)

    async def get(self, letter_id: str) -> DeadLetter:
        return await self.store.get(letter_id)

    async def remove(self, letter_ids: Sequence[str]) -> int:
        return await self.store.remove(letter_ids)


def rss() -> int:
    """This process's resident set size in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Samples:
    """What the soak saw every few seconds: RSS, disk, and consumers not ``running``."""

    rss: list[tuple[float, int]] = field(default_factory=list)
    disk: list[int] = field(default_factory=list)
    troubles: list[str] = field(default_factory=list)
    """A consumer seen not ``running``, or restarted since the sample before."""
    restarts: dict[str, int] = field(default_factory=dict)

    def take(self, at: float, bus: Bus, path: Path | None) -> None:
        self.rss.append((at, rss()))
        if path is not None:
            self.disk.append(on_disk(path))
        for r in bus.health().routes:
            if r.state != "running" or r.restarts > self.restarts.get(r.group, 0):
                self.troubles.append(
                    f"{at:.0f}s {r.group}: {r.state}, {r.restarts} restarts, {r.last_error}"
                )
            self.restarts[r.group] = r.restarts

    def at(self, moment: float) -> int:
        """RSS at the first sample taken at ``moment`` or later."""
        return next(size for at, size in self.rss if at >= moment)


async def receiving(bus: Bus, topic: str, tallies: Sequence[Tally]) -> None:
    """Return once every group's consumer runs and receives: a probe reached it (a new group
    may start at the end of the log, so probes go on until each has seen one)."""
    async with asyncio.timeout(60):
        while not all(t.probed.is_set() for t in tallies):
            await bus.publish(Message("tidings.probe", b"{}", {PROBE_HEADER: "1"}), topic=topic)
            await asyncio.sleep(0.2)  # between probes; the loop condition is what is awaited


@pytest.mark.timeout(SECONDS + DRAIN_SECONDS + 300)
async def test_steady_load_loses_nothing_and_stays_bounded(
    durable: Durable, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # one warning per dead letter would pile up in the captured log, and in RSS
    caplog.set_level(logging.ERROR, logger="tidings.dead_letters")
    capacity = int(RATE * SECONDS) + RATE
    tallies = {unique("billing"): Tally(capacity), unique("audit"): Tally(capacity)}
    transport = durable.factory()

    def dead_lettered(letter: DeadLetter) -> None:
        tallies[letter.group].settle(bus.codec.decode(letter.data, SoakOrder).n, DEAD)

    bus = Bus(transport, dead_letters=CountedDeadLetters(transport.dead_letters(), dead_lettered))
    topic = unique("soak")
    for group, tally in tallies.items():
        bus.subscribe(topic, tally.handle, group=group, retry=RETRY, concurrency=8)
    samples = Samples()
    loop = asyncio.get_running_loop()
    async with bus:
        await receiving(bus, topic, list(tallies.values()))
        published, burst = 0, RATE // BURSTS
        started, next_sample = loop.time(), 0.0
        while (elapsed := loop.time() - started) < SECONDS:
            if elapsed >= next_sample:
                samples.take(elapsed, bus, durable.path)
                next_sample += SAMPLE_EVERY
            if (ahead := published / RATE - elapsed) > 0:
                await asyncio.sleep(ahead)  # pacing the load, not synchronising
            orders = [SoakOrder(n, NOTE) for n in range(published, published + burst)]
            await bus.publish_many(orders, topic=topic)
            published += burst
        publish_seconds = loop.time() - started
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                for tally in tallies.values():
                    await tally.until_settled(published)
        except TimeoutError:
            pass  # the counts below say what is missing
        drained = loop.time() - started - publish_seconds
        samples.take(loop.time() - started, bus, durable.path)
        final_health = bus.health()

    half, end = samples.at(SECONDS / 2), samples.rss[-1][1]
    summary = {
        "transport": durable.name,
        "seconds": SECONDS,
        "target_rate": RATE,
        "rate": round(published / publish_seconds),
        "published": published,
        "groups": [
            {"handled": t.handled, "dead_lettered": t.dead, "delivered_again": t.again}
            for t in tallies.values()
        ],
        "drain_seconds": round(drained, 1),
        "rss_mb": {
            "start": round(samples.rss[0][1] / 1e6, 1),
            "half": round(half / 1e6, 1),
            "end": round(end / 1e6, 1),
            "max": round(max(size for _, size in samples.rss) / 1e6, 1),
        },
        "disk_max_mb": round(max(samples.disk) / 1e6, 1) if samples.disk else None,
    }
    with capsys.disabled():
        print(f"\nsoak {json.dumps(summary)}")

    doomed = len(range(0, published, FAIL_EVERY))
    for tally in tallies.values():
        assert (tally.handled, tally.dead) == (published - doomed, doomed), "nothing lost"
    assert not samples.troubles, f"the consumers stayed running: {samples.troubles}"
    assert final_health.ok, final_health
    assert end - half < max(RSS_GROWTH[0] * half, RSS_GROWTH[1]), "RSS stays bounded"
    if samples.disk:
        assert max(samples.disk) < SQLITE_BYTES, "the SQLite files stay bounded"
    assert published / publish_seconds >= 0.95 * RATE, "the publish rate held"
