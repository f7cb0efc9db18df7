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
With ``--awaited``: the per-message tables of :mod:`bench.b6_awaited` (the raw client, the Bus and
FastStream awaiting each publish; 64 Tasks against ``publish_many``).
Run: ``python -m bench.b6_redis [--quick] [--json] [--only NAME] [--awaited [--rounds N]]``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
import uuid
from typing import Any

import redis.asyncio as redis

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
    bus_rows,
    count_deliveries,
    each,
    one_by_one,
    parse_args,
    report,
    start_bus,
)
from tidings.message import Message
from tidings.transports.redis import RedisTransport

URL = os.environ.get("TIDINGS_REDIS_URL", "redis://127.0.0.1:6379/0")
TOPIC = "bench.b6.ping"
READ = 500


def body() -> bytes:
    """100 bytes of text (FastStream's batch parser wants UTF-8 that is not JSON): ``t``, the
    send time, spaces."""
    return b"t%-99.9f" % time.perf_counter()


def since(data: bytes | str) -> float:
    return time.perf_counter() - float(data[1:])


async def delete_keys(pattern: str) -> None:
    client = redis.Redis.from_url(URL)
    keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


# -- the limit: redis.asyncio -------------------------------------------------------------------


async def raw(counter: Counter, awaited: bool = False) -> tuple[Publish, Close]:
    """The limit; ``awaited``: one ``XADD`` awaited after another."""
    stream = f"b6-raw-{uuid.uuid4().hex[:8]}"
    # redis-py's default pool fails a command once 100 connections are busy (since 6.x): the
    # latency run's publishes, one Task each, may have more than that in flight
    client = redis.Redis.from_url(URL, max_connections=1000)
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
    counter.watch(consumer, "the redis.asyncio consumer loop")

    async def send(count: int) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(count):
                pipe.xadd(stream, {"data": body()})
            await pipe.execute()

    async def publish(count: int) -> None:
        if count == 1 or awaited:
            await each(count, lambda: client.xadd(stream, {"data": body()}))
        else:
            await one_by_one(count, send)

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
    consumer = asyncio.create_task(count_deliveries(subscription, counter, since))

    async def send(count: int) -> None:
        await broker.publish(TOPIC, [Message(TOPIC, body()) for _ in range(count)])

    async def close() -> None:
        await subscription.aclose()
        await consumer
        await broker.aclose()
        await delete_keys(f"{prefix}:*")

    return lambda count: one_by_one(count, send), close


async def bus(counter: Counter, **options: Any) -> tuple[Publish, Close]:
    prefix = f"b6-b-{uuid.uuid4().hex[:8]}"
    app = tidings.Bus(f"{URL}?prefix={prefix}")
    send = await start_bus(app, counter, **options)

    async def close() -> None:
        await app.aclose()
        await delete_keys(f"{prefix}:*")

    return (send if options.get("tasks") else lambda count: one_by_one(count, send)), close


# -- FastStream ---------------------------------------------------------------------------------


def faststream(batch: bool, awaited: bool = False) -> Contender:
    """FastStream's stream subscriber in a consumer group: one handler call per message, or
    (``batch``) per batch of up to 500, its fastest way to consume; ``awaited``: publishes
    awaited one by one."""

    async def contender(counter: Counter) -> tuple[Publish, Close]:
        from faststream.redis import RedisBroker, StreamSub

        stream = f"b6-fs-{uuid.uuid4().hex[:8]}"
        broker = RedisBroker(URL, logger=None)  # type: ignore[arg-type]  # None: no logging
        sub = StreamSub(
            stream, group="b6", consumer="c", max_records=READ, polling_interval=1000, batch=batch
        )
        if batch:
            # RedisBroker.subscriber is unannotated; the handler's own signature is checked
            @broker.subscriber(stream=sub)  # type: ignore[untyped-decorator]
            async def handle_batch(data: list[str]) -> None:
                for text in data:
                    counter.hit(since(text))

        else:

            @broker.subscriber(stream=sub)  # type: ignore[untyped-decorator]  # as above
            async def handle(data: str) -> None:
                counter.hit(since(data))

        await broker.start()
        client = redis.Redis.from_url(URL)

        async def send(count: int) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(count):
                    await broker.publish(body().decode(), stream=stream, pipeline=pipe)
                await pipe.execute()

        async def publish(count: int) -> None:
            if count == 1 or awaited:
                await each(count, lambda: broker.publish(body().decode(), stream=stream))
            else:
                await one_by_one(count, send)

        async def close() -> None:
            await broker.stop()
            await client.delete(stream)
            await client.aclose()

        return publish, close

    return contender


CONTENDERS: list[tuple[str, Contender, str]] = [
    ("limit: redis.asyncio", raw, f"pipelined XADD, XREADGROUP {READ} + XACK"),
    ("tidings RedisTransport", transport, f"publish batches of {BATCH}"),
    *bus_rows(bus),
    ("FastStream RedisBroker", faststream(False), "pipelined publishes, handler per message"),
    ("FastStream RedisBroker, batches", faststream(True), f"pipelined, handler per {READ}"),
]
BUS_AWAITED, CONCURRENT = awaited_bus_rows(bus)
AWAITED: list[tuple[str, Contender, str]] = [
    ("raw: redis.asyncio XADD", functools.partial(raw, awaited=True), "each XADD awaited"),
    BUS_AWAITED,
    ("FastStream RedisBroker", faststream(False, awaited=True), "each publish awaited"),
]


def main(argv: list[str] | None = None) -> object:
    args = parse_args(argv, __doc__)
    if args.awaited:
        return awaited_report(args, "Redis", AWAITED, CONCURRENT)
    return report(args, "Redis", CONTENDERS)


if __name__ == "__main__":
    main()
