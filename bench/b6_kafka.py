"""B6 on Kafka (tansu): 100,000 events of 100 bytes published and handled end to end, in one
process.

The benchmark starts its own tansu broker on a free loopback port (in-memory storage, see
``tidings.testing.tansu``). Every contender does the same durable work: records acknowledged by
the broker (``acks=all``), a consumer group reading from the earliest offset, offsets committed
only after the handler ran. Each run uses a fresh topic and group, and waits until its consumer
has joined the group before the clock starts. Publishers keep two batches of 1,000 in flight.
Consumers use ``fetch_max_wait_ms=10`` (tansu holds every fetch that long).

* limit: aiokafka used well (records appended to one ``create_batch`` per partition and sent
  with ``send_batch``; ``getmany`` batches, one commit per batch after handling it)
* tidings transport: ``KafkaTransport.publish`` of 1,000 messages and a subscription
* tidings Bus: ``Bus(url)`` with a subscribed handler, ``publish_many`` of 1,000 JSON events
* FastStream: ``KafkaBroker`` with concurrent ``broker.publish`` and a subscriber acking each
  message; and at its best, ``publish_batch`` with a batch subscriber

Then publish-to-handler latency (p50/p99) at a steady 1,000 events/s, one publish per event.
Run: ``python -m bench.b6_kafka [--quick] [--json] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import statistics
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import tidings
from bench.common import Row, print_table
from tidings.message import Message
from tidings.testing.tansu import Tansu
from tidings.transports.kafka import KafkaTransport

BATCH = 1000
PREFETCH = 1000
# tansu: a group's first join waits ~session_timeout/2, and every fetch waits its full max
SESSION_MS = 2000
HEARTBEAT_MS = 500
FETCH_WAIT_MS = 10
_STAMP = struct.Struct("d")
PAD = b"x" * (100 - _STAMP.size)
_ids = itertools.count()


def body() -> bytes:
    """100 bytes starting with the send time, for latency."""
    return _STAMP.pack(time.perf_counter()) + PAD


def since(data: bytes) -> float:
    sent: float = _STAMP.unpack_from(data)[0]
    return time.perf_counter() - sent


@tidings.event("bench.b6.kafka")
@dataclass(frozen=True, slots=True)
class Ping:
    sent: float
    pad: str  # with the JSON framing the payload is ~100 bytes


PING_PAD = "x" * 66


class Counter:
    """Counts handled events; ``done`` resolves at ``n``; records latencies when asked."""

    def __init__(self, n: int, latencies: list[float] | None = None) -> None:
        self.latencies = latencies
        self.reset(n)

    def reset(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def hit(self, latency: float | None = None) -> None:
        self.seen += 1
        if self.latencies is not None and latency is not None:
            self.latencies.append(latency)
        if self.seen >= self.n and not self.done.done():
            self.done.set_result(None)


Publish = Callable[[int], Awaitable[None]]
"""Publishes ``count`` events (one when measuring latency)."""
Close = Callable[[], Awaitable[None]]
Contender = Callable[[str, Counter], Awaitable[tuple[Publish, Close]]]
"""Sets up consumer and publisher on the broker at a bootstrap address; returns (publish, close)."""


async def windows(count: int, send: Callable[[int], Awaitable[None]]) -> None:
    """``send`` batches of up to BATCH summing to ``count``, two in flight at a time."""
    previous: asyncio.Task[None] | None = None
    for start in range(0, count, BATCH):
        current = asyncio.ensure_future(send(min(BATCH, count - start)))
        if previous is not None:
            await previous
        previous = current
    if previous is not None:
        await previous


async def one_by_one(count: int, send: Callable[[int], Awaitable[None]]) -> None:
    """``send`` batches of up to BATCH summing to ``count``, one at a time."""
    for start in range(0, count, BATCH):
        await send(min(BATCH, count - start))


def names(kind: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"b6.{kind}.{tag}", f"b6-{kind}-{tag}"


# -- the limit: aiokafka ------------------------------------------------------------------------


async def raw(bootstrap: str, counter: Counter) -> tuple[Publish, Close]:
    topic, group = names("raw")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=512 * 1024)
    await producer.start()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )
    await consumer.start()
    spread = itertools.count()

    async def send(count: int) -> None:
        partitions = sorted(await producer.partitions_for(topic))
        partition = partitions[next(spread) % len(partitions)]  # Kafka's sticky partitioning
        batch = producer.create_batch()
        for _ in range(count):
            # the same information tidings carries: an id for de-duplication, the event type
            headers = [("id", str(next(_ids)).encode()), ("type", b"bench.b6.kafka")]
            batch.append(key=None, value=body(), timestamp=None, headers=headers)
        await (await producer.send_batch(batch, topic, partition=partition))

    stopping = False

    async def consume() -> None:
        while not stopping:
            fetched = await consumer.getmany(timeout_ms=100, max_records=PREFETCH)
            for records in fetched.values():
                for record in records:
                    counter.hit(since(record.value))
            if fetched:
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in fetched.items()})

    task = asyncio.create_task(consume())

    async def close() -> None:
        nonlocal stopping
        stopping = True  # not cancel: a commit cut off half way is logged as an error
        await task
        await consumer.stop()
        await producer.stop()

    return lambda count: windows(count, send), close


# -- tidings: the transport, then the Bus -------------------------------------------------------


def url(bootstrap: str) -> str:
    return (
        f"kafka://{bootstrap}?session_timeout_ms={SESSION_MS}"
        f"&heartbeat_interval_ms={HEARTBEAT_MS}&fetch_max_wait_ms={FETCH_WAIT_MS}"
    )


async def transport(bootstrap: str, counter: Counter) -> tuple[Publish, Close]:
    topic, group = names("t")
    kafka = KafkaTransport(url(bootstrap))
    await kafka.start()
    subscription = kafka.subscribe(topic, group=group, prefetch=PREFETCH)

    async def consume() -> None:
        async for batch in subscription:
            for delivery in batch:
                counter.hit(since(delivery.message.data))
                await delivery.ack()

    task = asyncio.create_task(consume())

    async def send(count: int) -> None:
        await kafka.publish(topic, [Message("bench.b6.kafka", body()) for _ in range(count)])

    async def close() -> None:
        await subscription.aclose()
        await task
        await kafka.aclose()

    return lambda count: windows(count, send), close


async def bus(bootstrap: str, counter: Counter) -> tuple[Publish, Close]:
    topic, group = names("b")
    app = tidings.Bus(url(bootstrap))

    async def handle(event: Ping) -> None:
        counter.hit(time.perf_counter() - event.sent)

    app.subscribe(topic, handle, group=group, concurrency=PREFETCH // 2)
    await app.start()

    async def send(count: int) -> None:
        now = time.perf_counter()
        await app.publish_many((Ping(now, PING_PAD) for _ in range(count)), topic=topic)

    return lambda count: windows(count, send), app.aclose


# -- FastStream ---------------------------------------------------------------------------------


async def faststream(bootstrap: str, counter: Counter) -> tuple[Publish, Close]:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    topic, group = names("fs")
    broker = KafkaBroker(bootstrap, acks="all", logger=None)

    @broker.subscriber(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        max_records=PREFETCH,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )
    async def handle(data: bytes) -> None:
        counter.hit(since(data))

    await broker.start()

    async def send(count: int) -> None:
        await asyncio.gather(*[broker.publish(body(), topic) for _ in range(count)])

    return lambda count: windows(count, send), broker.stop


async def faststream_batch(bootstrap: str, counter: Counter) -> tuple[Publish, Close]:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    topic, group = names("fsb")
    broker = KafkaBroker(bootstrap, acks="all", max_batch_size=512 * 1024, logger=None)

    @broker.subscriber(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        batch=True,
        max_records=PREFETCH,
        batch_timeout_ms=10,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )
    async def handle(batch: list[bytes]) -> None:
        for data in batch:
            counter.hit(since(data))

    await broker.start()

    async def send(count: int) -> None:
        if count == 1:  # latency: one event per publish
            await broker.publish(body(), topic)
        else:
            await broker.publish_batch(*[body() for _ in range(count)], topic=topic)

    # one batch at a time: two batches queued for one partition make aiokafka's send_batch spin
    # until its timeout (KafkaTimeoutError)
    return lambda count: one_by_one(count, send), broker.stop


# -- measuring ----------------------------------------------------------------------------------


async def ready(contender: Contender, bootstrap: str, counter: Counter) -> tuple[Publish, Close]:
    """Set ``contender`` up and return once one event made it through (the group is joined)."""
    counter.reset(1)
    publish, close = await contender(bootstrap, counter)
    await publish(1)
    await counter.done
    return publish, close


async def throughput(contender: Contender, bootstrap: str, n: int) -> float:
    """Seconds from the first publish until the last of ``n`` events was handled."""
    counter = Counter(1)
    publish, close = await ready(contender, bootstrap, counter)
    counter.reset(n)
    started = time.perf_counter()
    await publish(n)
    await counter.done
    elapsed = time.perf_counter() - started
    await close()
    return elapsed


async def latency(
    contender: Contender, bootstrap: str, n: int, rate: float = 1000.0
) -> tuple[float, float]:
    """p50 and p99 publish-to-handler latency (ms) of ``n`` events published one by one at
    ``rate`` per second, each publish in its own task so a slow confirmation does not hold the
    schedule."""
    latencies: list[float] = []
    counter = Counter(1, latencies)
    publish, close = await ready(contender, bootstrap, counter)
    latencies.clear()
    counter.reset(n)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    started = loop.time()
    for i in range(n):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(publish(1))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await counter.done
    await close()
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


CONTENDERS: list[tuple[str, Contender, str]] = [
    ("limit: aiokafka", raw, "send_batch per partition, getmany + commit"),
    ("tidings KafkaTransport", transport, f"publish of {BATCH}"),
    ("tidings Bus", bus, f"publish_many of {BATCH}, JSON events"),
    ("FastStream KafkaBroker", faststream, f"{BATCH} concurrent publishes, ack each"),
    ("FastStream KafkaBroker batches", faststream_batch, "publish_batch, batch subscriber"),
]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 events, 1 s of latency")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="run the contenders whose name contains this")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else 100_000
    steady = 1_000 if args.quick else 5_000
    rows = []
    percentiles: dict[str, tuple[float, float]] = {}
    with Tansu() as broker:
        for name, contender, note in CONTENDERS:
            if args.only and args.only.lower() not in name.lower() and contender is not raw:
                continue
            seconds = asyncio.run(throughput(contender, broker.bootstrap, n))
            percentiles[name] = asyncio.run(latency(contender, broker.bootstrap, steady))
            rows.append(Row(name, n, seconds, note))
    title = (
        f"B6 Kafka (tansu): {n:,} events of 100 bytes end to end "
        "(target >= 0.80x, >= 3x FastStream)"
    )
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        result = print_table(title, rows, rows[0].name)
    fast = next((r.rate for r in rows if r.name.startswith("FastStream")), None)
    for row, source in zip(result, rows, strict=True):
        row["p50_ms"], row["p99_ms"] = percentiles[source.name]
        row["vs_faststream"] = source.rate / fast if fast else None
    if args.json:
        print(json.dumps({"benchmark": title, "latency_rate": 1000, "rows": result}))
    else:
        print("  at a steady 1,000 events/s: p50 / p99 publish-to-handler latency")
        for row in result:
            versus = row["vs_faststream"]
            shown = f"{versus:>8.2f}x FastStream" if isinstance(versus, float) else ""
            print(f"  {row['name']:<34}{row['p50_ms']:>8.1f} ms{row['p99_ms']:>8.1f} ms{shown}")
    return result


if __name__ == "__main__":
    main()
