"""B6 on Redis Streams: 100,000 events of 100 bytes published and handled end to end, in one
process.

Every contender does the same work on the local Redis (``TIDINGS_REDIS_URL``, default
``redis://127.0.0.1:6379/0``): entries appended to a stream, read by a consumer group, acked
after the handler ran.

* limit: redis.asyncio (hiredis parser) used directly and well: pipelined XADD in batches,
  XREADGROUP COUNT 500 + one XACK per batch
* tidings transport: ``RedisTransport.publish`` in batches of 1,000 and a subscription
* tidings Bus: ``Bus(url)`` with a subscribed handler, ``publish_many`` in batches of 1,000
* FastStream: ``RedisBroker`` with a stream subscriber in a consumer group, publishes staged in a
  redis pipeline of 1,000 (its fastest way to publish many); once with a handler per message,
  once with a batch handler (its fastest way to consume). Payloads are text, as its batch
  parser needs

Then publish-to-handler latency (p50/p99) at a steady 1,000 events/s, one publish per event.
Run: ``python -m bench.b6_redis [--quick] [--json] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

import tidings
from bench.common import Row, print_table
from tidings.message import Message
from tidings.transports.redis import RedisTransport

URL = os.environ.get("TIDINGS_REDIS_URL", "redis://127.0.0.1:6379/0")
TOPIC = "bench.b6.ping"
BATCH = 1000
PREFETCH = 1000
READ = 500


def body() -> bytes:
    """100 bytes of text (FastStream's batch parser wants UTF-8 that is not JSON): ``t``, the
    send time, spaces."""
    return b"t%-99.9f" % time.perf_counter()


def since(data: bytes | str) -> float:
    return time.perf_counter() - float(data[1:])


@tidings.event("bench.b6.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    sent: float
    pad: str  # with the JSON framing the payload is ~100 bytes


PING_PAD = "x" * 66


class Counter:
    """Counts handled events; ``done`` resolves at ``n``; records latencies when asked."""

    def __init__(self, n: int, latencies: list[float] | None = None) -> None:
        self.n = n
        self.seen = 0
        self.latencies = latencies
        self.done = asyncio.get_running_loop().create_future()

    def hit(self, latency: float) -> None:
        self.seen += 1
        if self.latencies is not None:
            self.latencies.append(latency)
        if self.seen >= self.n and not self.done.done():
            self.done.set_result(None)


Publish = Callable[[int], Awaitable[None]]
"""Publishes ``count`` events (one when measuring latency)."""
Close = Callable[[], Awaitable[None]]
Contender = Callable[[Counter], Awaitable[tuple[Publish, Close]]]
"""Sets up consumer and publisher for a counter; returns (publish, close)."""


async def _delete(pattern: str) -> None:
    client = redis.Redis.from_url(URL)
    keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


# -- the limit: redis.asyncio -------------------------------------------------------------------


async def raw(counter: Counter) -> tuple[Publish, Close]:
    stream = f"b6-raw-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(URL)
    await client.xgroup_create(stream, "b6", id="0", mkstream=True)
    running = True

    async def consume() -> None:
        while running:  # not cancelled: redis-py may retry a cancelled blocking read
            reply: Any = await client.xreadgroup("b6", "c", {stream: ">"}, count=READ, block=100)
            for _, entries in reply:
                ids = []
                for entry_id, fields in entries:
                    counter.hit(since(fields[b"data"]))
                    ids.append(entry_id)
                await client.xack(stream, "b6", *ids)

    consumer = asyncio.create_task(consume())

    async def publish(count: int) -> None:
        if count == 1:
            await client.xadd(stream, {"data": body()})
            return
        for start in range(0, count, BATCH):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(min(BATCH, count - start)):
                    pipe.xadd(stream, {"data": body()})
                await pipe.execute()

    async def close() -> None:
        nonlocal running
        running = False
        await consumer
        await client.delete(stream)
        await client.aclose()

    return publish, close


# -- tidings: the transport, then the Bus -------------------------------------------------------


async def transport(counter: Counter) -> tuple[Publish, Close]:
    prefix = f"b6-t-{uuid.uuid4().hex[:8]}"
    broker = RedisTransport(f"{URL}?prefix={prefix}")
    await broker.start()
    subscription = broker.subscribe(TOPIC, group="b6", prefetch=PREFETCH)

    async def consume() -> None:
        async for batch in subscription:
            for delivery in batch:
                counter.hit(since(delivery.message.data))
                await delivery.ack()

    consumer = asyncio.create_task(consume())

    async def publish(count: int) -> None:
        for start in range(0, count, BATCH):
            batch = [Message(TOPIC, body()) for _ in range(min(BATCH, count - start))]
            await broker.publish(TOPIC, batch)

    async def close() -> None:
        await subscription.aclose()
        await consumer
        await broker.aclose()
        await _delete(f"{prefix}:*")

    return publish, close


async def bus(counter: Counter) -> tuple[Publish, Close]:
    prefix = f"b6-b-{uuid.uuid4().hex[:8]}"
    app = tidings.Bus(f"{URL}?prefix={prefix}")

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
        await _delete(f"{prefix}:*")

    return publish, close


# -- FastStream ---------------------------------------------------------------------------------


def faststream(batch: bool) -> Contender:
    """FastStream's stream subscriber in a consumer group: one handler call per message, or
    (``batch``) per batch of up to 500, its fastest way to consume."""

    async def contender(counter: Counter) -> tuple[Publish, Close]:
        from faststream.redis import RedisBroker, StreamSub

        stream = f"b6-fs-{uuid.uuid4().hex[:8]}"
        broker = RedisBroker(URL, logger=None)  # type: ignore[arg-type]  # None: no logging
        sub = StreamSub(
            stream, group="b6", consumer="c", max_records=READ, polling_interval=1000, batch=batch
        )
        if batch:

            @broker.subscriber(stream=sub)
            async def handle_batch(data: list[str]) -> None:
                for text in data:
                    counter.hit(since(text))

        else:

            @broker.subscriber(stream=sub)
            async def handle(data: str) -> None:
                counter.hit(since(data))

        await broker.start()
        client = redis.Redis.from_url(URL)

        async def publish(count: int) -> None:
            if count == 1:
                await broker.publish(body().decode(), stream=stream)
                return
            for start in range(0, count, BATCH):
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(min(BATCH, count - start)):
                        await broker.publish(body().decode(), stream=stream, pipeline=pipe)
                    await pipe.execute()

        async def close() -> None:
            await broker.stop()
            await client.delete(stream)
            await client.aclose()

        return publish, close

    return contender


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
    ``rate`` per second, each publish in its own task so a slow one does not hold the schedule."""
    latencies: list[float] = []
    counter = Counter(1, latencies)
    publish, close = await contender(counter)
    await publish(1)  # warm up: groups and connections
    await counter.done
    latencies.clear()
    counter.seen, counter.n = 0, n
    counter.done = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Future[None]] = set()
    started = loop.time()
    for i in range(n):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule of the steady rate
        task = asyncio.ensure_future(publish(1))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await counter.done
    await close()
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


CONTENDERS: list[tuple[str, Contender, str]] = [
    ("limit: redis.asyncio", raw, f"pipelined XADD, XREADGROUP {READ} + XACK"),
    ("tidings RedisTransport", transport, f"publish batches of {BATCH}"),
    ("tidings Bus", bus, f"publish_many of {BATCH}, JSON events"),
    ("FastStream RedisBroker", faststream(False), "pipelined publishes, handler per message"),
    ("FastStream RedisBroker, batches", faststream(True), f"pipelined, handler per {READ}"),
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
        percentiles[name] = asyncio.run(latency(contender, steady))
        rows.append(Row(name, n, seconds, note))
    title = f"B6 Redis: {n:,} events of 100 bytes end to end (target >= 0.80x, >= 3x FastStream)"
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        result = print_table(title, rows, rows[0].name)
    fast = next((r.rate for r in rows if r.name == "FastStream RedisBroker"), float("nan"))
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
