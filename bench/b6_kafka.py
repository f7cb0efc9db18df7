"""B6 on Kafka (tansu): 100,000 events of 100 bytes published and handled end to end, in one
process.

The benchmark starts a tansu broker on a free loopback port (in-memory storage, see
``tidings.testing.tansu``) for each measurement of each contender, so that none reads from a
broker that earlier contenders filled. Every contender does the same durable work: records
acknowledged by the broker (``acks=all``), a consumer group reading from the earliest offset,
offsets committed only after the handler ran. Each run uses a fresh topic and group, and waits
until its consumer has joined the group before the clock starts. Publishers keep two batches of
1,000 in flight. Consumers use ``fetch_max_wait_ms=10`` (tansu holds every fetch that long).

* limit: aiokafka used well (records appended to one ``create_batch`` per partition and sent
  with ``send_batch``; ``getmany`` batches, one commit per batch after handling it)
* tidings transport: ``KafkaTransport.publish`` of 1,000 messages and a subscription
* tidings Bus: ``Bus(url)`` with a subscribed handler, ``publish_many`` of 1,000 JSON events
* FastStream: ``KafkaBroker`` with concurrent ``broker.publish`` and a subscriber acking each
  message; and at its best, ``publish_batch`` with a batch subscriber

Then publish-to-handler latency (p50/p99) at a steady 1,000 events/s, one publish per event.
With ``--awaited``: the per-message tables of :mod:`bench.b6_awaited` (``send_and_wait``, the Bus
and FastStream awaiting each publish; 64 Tasks against ``publish_many``).
Run: ``python -m bench.b6_kafka [--quick] [--json] [--only NAME] [--awaited [--rounds N]]``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import tidings
from bench.b6_awaited import awaited_report
from bench.b6_awaited import bus_rows as awaited_bus_rows
from bench.b6_common import (
    BATCH,
    PREFETCH,
    Close,
    Contender,
    Counter,
    Publish,
    body,
    bus_rows,
    count_deliveries,
    each,
    one_by_one,
    parse_args,
    report,
    since,
    start_bus,
    windows,
)
from tidings.message import Message
from tidings.testing.tansu import Tansu
from tidings.transports.kafka import KafkaTransport

# tansu: a group's first join waits ~session_timeout/2, and every fetch waits its full max
SESSION_MS = 2000
HEARTBEAT_MS = 500
FETCH_WAIT_MS = 10
_ids = itertools.count()


KafkaContender = Callable[[str, Counter], Awaitable[tuple[Publish, Close]]]
"""Sets up consumer and publisher on the broker at a bootstrap address; returns (publish, close)."""


def names(kind: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"b6.{kind}.{tag}", f"b6-{kind}-{tag}"


# -- the limit: aiokafka ------------------------------------------------------------------------


async def raw(bootstrap: str, counter: Counter, awaited: bool = False) -> tuple[Publish, Close]:
    """The limit; ``awaited``: ``send_and_wait`` awaited record by record."""
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
    locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def send(count: int) -> None:
        if count == 1:  # latency: concurrent single sends, batched by aiokafka's accumulator
            await producer.send_and_wait(topic, body(), headers=_headers())
            return
        partitions = sorted(await producer.partitions_for(topic))
        partition = partitions[next(spread) % len(partitions)]  # Kafka's sticky partitioning
        batch = producer.create_batch()
        for _ in range(count):
            batch.append(key=None, value=body(), timestamp=None, headers=_headers())
        # Two batches queued for one partition at once make send_batch spin until its timeout
        # and then raise: each partition takes one at a time.
        async with locks[partition]:
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
    counter.watch(task, "the aiokafka consumer loop")

    async def close() -> None:
        nonlocal stopping
        stopping = True  # not cancel: a commit cut off half way is logged as an error
        await task
        await consumer.stop()
        await producer.stop()

    if awaited:
        one = functools.partial(producer.send_and_wait, topic)
        return lambda count: each(count, lambda: one(body(), headers=_headers())), close
    return lambda count: windows(count, send), close


def _headers() -> list[tuple[str, bytes]]:
    """What tidings carries besides the payload: an id for de-duplication, the event type."""
    return [("id", str(next(_ids)).encode()), ("type", b"bench.b6.kafka")]


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
    task = asyncio.create_task(count_deliveries(subscription, counter))

    async def send(count: int) -> None:
        await kafka.publish(topic, [Message("bench.b6.kafka", body()) for _ in range(count)])

    async def close() -> None:
        await subscription.aclose()
        await task
        await kafka.aclose()

    return lambda count: windows(count, send), close


async def bus(bootstrap: str, counter: Counter, **options: Any) -> tuple[Publish, Close]:
    topic, group = names("b")
    app = tidings.Bus(url(bootstrap))
    send = await start_bus(app, counter, group, topic, **options)

    return (send if options.get("tasks") else lambda count: windows(count, send)), app.aclose


# -- FastStream ---------------------------------------------------------------------------------


async def faststream(
    bootstrap: str, counter: Counter, awaited: bool = False
) -> tuple[Publish, Close]:
    """``awaited``: ``broker.publish`` awaited one by one."""
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

    if awaited:
        return lambda count: each(count, lambda: broker.publish(body(), topic)), broker.stop
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


CONTENDERS: list[tuple[str, KafkaContender, str]] = [
    ("limit: aiokafka", raw, "send_batch per partition, getmany + commit"),
    ("tidings KafkaTransport", transport, f"publish of {BATCH}"),
    *bus_rows(bus),
    ("FastStream KafkaBroker", faststream, f"{BATCH} concurrent publishes, ack each"),
    ("FastStream KafkaBroker batches", faststream_batch, "publish_batch, batch subscriber"),
]
BUS_AWAITED, CONCURRENT = awaited_bus_rows(bus)
AWAITED: list[tuple[str, KafkaContender, str]] = [
    ("raw: aiokafka send_and_wait", functools.partial(raw, awaited=True), "each awaited"),
    BUS_AWAITED,
    ("FastStream KafkaBroker", functools.partial(faststream, awaited=True), "each awaited"),
]


def on_a_fresh_broker(contender: KafkaContender) -> Contender:
    """``contender`` on a tansu broker of its own, stopped by its ``close``: tansu keeps every
    record in memory and slows down as it fills, so a shared broker would favour whichever
    contender runs first (it gave the Bus's latency run, the fifth, a p99 half again as long as
    the raw client's; on a broker of its own, about the same)."""

    async def run(counter: Counter) -> tuple[Publish, Close]:
        broker = Tansu()
        broker.start()  # before the clock starts: the measurements wait for the warm-up
        try:
            publish, close = await contender(broker.bootstrap, counter)
        except BaseException:
            broker.stop()
            raise

        async def closed() -> None:
            try:
                await close()
            finally:
                broker.stop()

        return publish, closed

    return run


def main(argv: list[str] | None = None) -> object:
    args = parse_args(argv, __doc__)

    def fresh(rows: list[tuple[str, KafkaContender, str]]) -> list[tuple[str, Contender, str]]:
        return [(name, on_a_fresh_broker(run), note) for name, run, note in rows]

    if args.awaited:
        return awaited_report(args, "Kafka (tansu)", fresh(AWAITED), fresh(CONCURRENT))
    # the clock starts once the consumer joined its group (see the module docstring)
    return report(args, "Kafka (tansu)", fresh(CONTENDERS), warm_up=True)


if __name__ == "__main__":
    main()
