"""B6 on RabbitMQ: 100,000 events of 100 bytes published and handled end to end, in one process.

Every contender does the same durable work on the local broker (``TIDINGS_AMQP_URL``, default
``amqp://guest:guest@127.0.0.1:5672/``): persistent messages through a durable topic exchange into
a quorum queue, publisher confirms awaited, manual acks after the handler ran.

* limit: aiormq used directly and well (pipelined confirmed publishes, prefetch, multiple acks)
* tidings transport: ``RabbitMQTransport.publish`` in batches of 1,000 and a subscription
* tidings Bus: ``Bus(url)`` with a subscribed handler, ``publish_many`` in batches of 1,000
* FastStream: ``RabbitBroker`` with a subscriber, 1,000 concurrent ``broker.publish`` at a time

Then publish-to-handler latency (p50/p99) at a steady 1,000 events/s, one publish per event.
Run: ``python -m bench.b6_rabbitmq [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import aiormq
from pamqp.commands import Basic

import tidings
from bench.common import Row, print_table
from tidings.message import Message
from tidings.transports.rabbitmq import RabbitMQOptions, RabbitMQTransport, queue_name

URL = os.environ.get("TIDINGS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TOPIC = "bench.b6.ping"
BATCH = 1000
PREFETCH = 1000
_STAMP = struct.Struct("d")
PAD = b"x" * (100 - _STAMP.size)


def body() -> bytes:
    """100 bytes starting with the send time, for latency."""
    return _STAMP.pack(time.perf_counter()) + PAD


def since(data: bytes) -> float:
    sent: float = _STAMP.unpack_from(data)[0]
    return time.perf_counter() - sent


@tidings.event("bench.b6.ping")
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
        """Count ``n`` more events from zero."""
        self.n = n
        self.seen = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.latencies is not None:
            self.latencies.clear()

    def hit(self, latency: float | None = None) -> None:
        self.seen += 1
        if self.latencies is not None and latency is not None:
            self.latencies.append(latency)
        if self.seen >= self.n and not self.done.done():
            self.done.set_result(None)


Publish = Callable[[int], Coroutine[Any, Any, None]]
"""Publishes ``count`` events (one when measuring latency)."""
Contender = Callable[[Counter], Awaitable[tuple[Publish, Callable[[], Awaitable[None]]]]]
"""Sets up consumer and publisher for a counter; returns (publish, close)."""


# -- the limit: aiormq --------------------------------------------------------------------------


async def raw(counter: Counter) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    name = f"b6-raw-{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(URL)
    pub = cast(aiormq.Channel, await connection.channel(publisher_confirms=True))
    sub = await connection.channel(publisher_confirms=False)
    await pub.exchange_declare(name, exchange_type="topic", durable=True)
    await pub.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    await pub.queue_bind(name, name, routing_key="bench.#")
    await sub.basic_qos(prefetch_count=PREFETCH)
    unacked = 0

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        nonlocal unacked
        counter.hit(since(message.body))
        unacked += 1
        if unacked >= 64 or counter.seen >= counter.n:
            unacked = 0
            tag = cast(Basic.Deliver, message.delivery).delivery_tag or 0
            await sub.basic_ack(tag, multiple=True, wait=False)

    await sub.basic_consume(name, on_message)

    def one() -> Awaitable[object]:
        props = Basic.Properties(delivery_mode=2, message_id=uuid.uuid4().hex)
        return pub.basic_publish(
            body(), exchange=name, routing_key=TOPIC, properties=props, wait=False
        )

    async def publish(count: int) -> None:
        if count == 1:
            await one()
            return
        previous: asyncio.Future[list[object]] | None = None
        for start in range(0, count, 512):  # two windows in flight, like tidings does
            window = asyncio.gather(*[one() for _ in range(min(512, count - start))])
            if previous is not None:
                await previous
            previous = window
        if previous is not None:
            await previous

    async def close() -> None:
        await sub.close()  # before the queue goes: no consumer the broker would cancel
        await pub.queue_delete(name)
        await pub.exchange_delete(name)
        await connection.close()

    return publish, close


# -- tidings: the transport, then the Bus -------------------------------------------------------


async def transport(counter: Counter) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    exchange = f"b6-t-{uuid.uuid4().hex[:8]}"
    rabbit = RabbitMQTransport(RabbitMQOptions(URL, exchange=exchange))
    await rabbit.start()
    subscription = rabbit.subscribe(TOPIC, group="b6", prefetch=PREFETCH)

    async def consume() -> None:
        async for batch in subscription:
            for delivery in batch:
                counter.hit(since(delivery.message.data))
                await delivery.ack()

    consumer = asyncio.create_task(consume())

    async def publish(count: int) -> None:
        for start in range(0, count, BATCH):
            batch = [Message(TOPIC, body()) for _ in range(min(BATCH, count - start))]
            await rabbit.publish(TOPIC, batch)

    async def close() -> None:
        await subscription.aclose()
        await consumer
        await rabbit.aclose()
        await _delete(queue_name(exchange, "b6", TOPIC), exchange)

    return publish, close


async def bus(counter: Counter) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    exchange = f"b6-b-{uuid.uuid4().hex[:8]}"
    app = tidings.Bus(f"{URL}?exchange={exchange}")

    async def handle(event: Ping) -> None:
        counter.hit(time.perf_counter() - event.sent)

    app.subscribe(Ping, handle, group="b6", concurrency=PREFETCH // 2)
    await app.start()

    async def publish(count: int) -> None:
        for start in range(0, count, BATCH):
            now = time.perf_counter()
            await app.publish_many(Ping(now, PING_PAD) for _ in range(min(BATCH, count - start)))

    async def close() -> None:
        await app.aclose()
        await _delete(queue_name(exchange, "b6", TOPIC), exchange)

    return publish, close


# -- FastStream ---------------------------------------------------------------------------------


async def faststream(counter: Counter) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    from faststream.rabbit import (
        Channel,
        ExchangeType,
        QueueType,
        RabbitBroker,
        RabbitExchange,
        RabbitQueue,
    )

    name = f"b6-fs-{uuid.uuid4().hex[:8]}"
    broker = RabbitBroker(URL, logger=None, default_channel=Channel(prefetch_count=PREFETCH))
    exchange = RabbitExchange(name, type=ExchangeType.TOPIC, durable=True)
    queue = RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True, routing_key="bench.#")

    @broker.subscriber(queue, exchange)
    async def handle(data: bytes) -> None:
        counter.hit(since(data))

    await broker.start()

    def one() -> Awaitable[object]:
        return broker.publish(
            body(), exchange=exchange, routing_key=TOPIC, persist=True, mandatory=False
        )

    async def publish(count: int) -> None:
        for start in range(0, count, BATCH):
            await asyncio.gather(*[one() for _ in range(min(BATCH, count - start))])

    async def close() -> None:
        await broker.stop()
        await _delete(name, name)

    return publish, close


async def _delete(queue: str, exchange: str) -> None:
    connection = await aiormq.connect(URL)
    channel = await connection.channel()
    await channel.queue_delete(queue)
    await channel.exchange_delete(exchange)
    await connection.close()


# -- measuring ----------------------------------------------------------------------------------


async def throughput(contender: Contender, n: int) -> float:
    """Seconds from the first publish until the last of ``n`` events was handled."""
    counter = Counter(n)
    publish, close = await contender(counter)
    started = time.perf_counter()
    await publish(n)
    await counter.done
    elapsed = time.perf_counter() - started
    await close()
    return elapsed


async def latency(contender: Contender, n: int, rate: float = 1000.0) -> tuple[float, float]:
    """p50 and p99 publish-to-handler latency (ms) of ``n`` events published one by one at
    ``rate`` per second (each publish in its own task, so a slow confirm does not hold the
    schedule)."""
    latencies: list[float] = []
    counter = Counter(1, latencies)
    publish, close = await contender(counter)
    await publish(1)  # warm up: topology and first deliveries
    await counter.done
    counter.reset(n)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    started = loop.time()
    for i in range(n):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(publish(1))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await counter.done
    await close()
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


CONTENDERS: list[tuple[str, Contender, str]] = [
    ("limit: aiormq", raw, "pipelined confirms, multiple acks"),
    ("tidings RabbitMQTransport", transport, f"publish batches of {BATCH}"),
    ("tidings Bus", bus, f"publish_many of {BATCH}, JSON events"),
    ("FastStream RabbitBroker", faststream, f"{BATCH} concurrent publishes"),
]


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 events, 1 s of latency")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="run the contenders whose name contains this")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else 100_000
    steady = 1_000 if args.quick else 5_000
    rows = []
    percentiles: dict[str, tuple[float, float]] = {}
    for name, contender, note in CONTENDERS:
        if args.only and args.only.lower() not in name.lower() and contender is not raw:
            continue
        seconds = asyncio.run(throughput(contender, n))
        p50, p99 = asyncio.run(latency(contender, steady))
        percentiles[name] = (p50, p99)
        rows.append(Row(name, n, seconds, note))
    title = f"B6 RabbitMQ: {n:,} events of 100 bytes end to end (target >= 0.80x, >= 3x FastStream)"
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        result = print_table(title, rows, rows[0].name)
    fast = next((r.rate for r in rows if r.name.startswith("FastStream")), float("nan"))
    for row, source in zip(result, rows, strict=True):
        row["p50_ms"], row["p99_ms"] = percentiles[source.name]
        row["vs_faststream"] = source.rate / fast
    if args.json:
        print(json.dumps({"benchmark": title, "latency_rate": 1000, "rows": result}))
    else:
        print("  at a steady 1,000 events/s: p50 / p99 publish-to-handler latency")
        for row in result:
            print(
                f"  {row['name']:<34}{row['p50_ms']:>8.1f} ms{row['p99_ms']:>8.1f} ms"
                f"{row['vs_faststream']:>8.2f}x FastStream"
            )
    return result


if __name__ == "__main__":
    main()
