"""B6 on NATS JetStream: 100,000 events of 100 bytes published and handled end to end, in one
process.

Every contender does the same durable work on the local server (``TIDINGS_NATS_URL``, default
``nats://127.0.0.1:4222``): a file-storage stream, publishes confirmed by JetStream (each with a
``Nats-Msg-Id`` for de-duplication), a durable pull consumer, an explicit ack after the handler ran.
Publishers keep two batches of 1,000 in flight.

* limit: nats-py's core API used well (publishes with a reply inbox whose confirmations are
  counted, pull requests topped up at half the window, acks published to the reply subject)
* tidings transport: ``NatsTransport.publish`` of 1,000 messages and a subscription
* tidings Bus: ``Bus(url)`` with a subscribed handler, ``publish_many`` of 1,000 JSON events
* FastStream: ``NatsBroker`` with a pull subscriber (batches of 1,000), concurrent
  ``broker.publish(..., stream=…)``

Then publish-to-handler latency (p50/p99) at a steady 1,000 events/s, one publish per event.
Run: ``python -m bench.b6_nats [--quick] [--json] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import statistics
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, StreamConfig

import tidings
from bench.common import Row, print_table
from tidings.message import Message
from tidings.transports.nats import NatsOptions, NatsTransport

URL = os.environ.get("TIDINGS_NATS_URL", "nats://127.0.0.1:4222")
BATCH = 1000
PREFETCH = 1000
_STAMP = struct.Struct("d")
PAD = b"x" * (100 - _STAMP.size)
_ids = itertools.count()


def body() -> bytes:
    """100 bytes starting with the send time, for latency."""
    return _STAMP.pack(time.perf_counter()) + PAD


def since(data: bytes) -> float:
    sent: float = _STAMP.unpack_from(data)[0]
    return time.perf_counter() - sent


@tidings.event("bench.b6.nats")
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

    def hit(self, latency: float | None = None) -> None:
        self.seen += 1
        if self.latencies is not None and latency is not None:
            self.latencies.append(latency)
        if self.seen >= self.n and not self.done.done():
            self.done.set_result(None)


Publish = Callable[[int], Awaitable[None]]
"""Publishes ``count`` events (one when measuring latency)."""
Close = Callable[[], Awaitable[None]]
Contender = Callable[[Counter], Awaitable[tuple[Publish, Close]]]
"""Sets up consumer and publisher for a counter; returns (publish, close)."""


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


def names(kind: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"B6{kind.upper()}{tag}", f"b6{kind}{tag}"


async def delete_streams(*streams: str) -> None:
    nc = await nats.connect(URL)
    js = nc.jetstream()
    for stream in streams:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await nc.close()


# -- the limit: nats-py's core API --------------------------------------------------------------


async def raw(counter: Counter) -> tuple[Publish, Close]:
    stream, prefix = names("raw")
    subject = f"{prefix}.ping"
    nc = await nats.connect(URL)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"]))
    config = ConsumerConfig(durable_name="b6", max_ack_pending=20_000, ack_wait=30)
    await js.add_consumer(stream, config)

    confirmations: dict[str, list[object]] = {}  # reply subject -> [remaining, future]

    async def on_confirmation(msg: Msg) -> None:
        waiting = confirmations[msg.subject]
        waiting[0] -= 1  # type: ignore[operator]
        if waiting[0] == 0:
            waiting[1].set_result(None)  # type: ignore[attr-defined]

    inbox = nc.new_inbox()
    await nc.subscribe(f"{inbox}.*", cb=on_confirmation)

    async def send(count: int) -> None:
        reply = f"{inbox}.{next(_ids)}"
        done = asyncio.get_running_loop().create_future()
        confirmations[reply] = [count, done]
        for _ in range(count):
            msg_id = {"Nats-Msg-Id": str(next(_ids))}
            await nc.publish(subject, body(), reply=reply, headers=msg_id)
        await done
        del confirmations[reply]

    received: list[Msg] = []
    arrived = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        received.append(msg)
        arrived.set()

    deliveries = nc.new_inbox()
    await nc.subscribe(deliveries, cb=on_message)

    async def consume() -> None:
        pull = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.b6"
        requested = 0
        while True:
            if requested < PREFETCH // 2:
                request = {"batch": PREFETCH - requested, "expires": 5_000_000_000}
                await nc.publish(pull, json.dumps(request).encode(), reply=deliveries)
                requested = PREFETCH
            await arrived.wait()
            arrived.clear()
            batch = received[:]
            received.clear()
            for msg in batch:
                if not msg.reply:  # a pull request expired: ask again
                    requested -= int((msg.headers or {}).get("Nats-Pending-Messages", 0))
                    continue
                requested -= 1
                counter.hit(since(msg.data))
                await nc.publish(msg.reply, b"+ACK")

    consumer = asyncio.create_task(consume())

    async def close() -> None:
        consumer.cancel()
        await nc.close()
        await delete_streams(stream)

    return lambda count: windows(count, send), close


# -- tidings: the transport, then the Bus -------------------------------------------------------


async def transport(counter: Counter) -> tuple[Publish, Close]:
    stream, prefix = names("t")
    jetstream = NatsTransport(NatsOptions((URL,), stream=stream, prefix=prefix))
    await jetstream.start()
    subscription = jetstream.subscribe("ping", group="b6", prefetch=PREFETCH)

    async def consume() -> None:
        async for batch in subscription:
            for delivery in batch:
                counter.hit(since(delivery.message.data))
                await delivery.ack()

    consumer = asyncio.create_task(consume())

    async def send(count: int) -> None:
        await jetstream.publish("ping", [Message("bench.b6.nats", body()) for _ in range(count)])

    async def close() -> None:
        await subscription.aclose()
        await consumer
        await jetstream.aclose()
        await delete_streams(stream, f"{stream}_DLQ")

    return lambda count: windows(count, send), close


async def bus(counter: Counter) -> tuple[Publish, Close]:
    stream, prefix = names("b")
    app = tidings.Bus(f"{URL}?stream={stream}&prefix={prefix}")

    async def handle(event: Ping) -> None:
        counter.hit(time.perf_counter() - event.sent)

    app.subscribe(Ping, handle, group="b6", concurrency=PREFETCH // 2)
    await app.start()

    async def send(count: int) -> None:
        now = time.perf_counter()
        await app.publish_many(Ping(now, PING_PAD) for _ in range(count))

    async def close() -> None:
        await app.aclose()
        await delete_streams(stream, f"{stream}_DLQ")

    return lambda count: windows(count, send), close


# -- FastStream ---------------------------------------------------------------------------------


async def faststream(counter: Counter) -> tuple[Publish, Close]:
    from faststream.nats import JStream, NatsBroker, PullSub

    stream, prefix = names("fs")
    subject = f"{prefix}.ping"
    broker = NatsBroker(URL, logger=None)
    jstream = JStream(stream, subjects=[f"{prefix}.>"])

    @broker.subscriber(subject, stream=jstream, durable="b6", pull_sub=PullSub(PREFETCH))
    async def handle(data: bytes) -> None:
        counter.hit(since(data))

    await broker.start()

    async def send(count: int) -> None:
        await asyncio.gather(
            *[broker.publish(body(), subject, stream=stream) for _ in range(count)]
        )

    async def close() -> None:
        await broker.stop()
        await delete_streams(stream)

    return lambda count: windows(count, send), close


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
    ``rate`` per second, each publish in its own task so a slow confirmation does not hold the
    schedule."""
    latencies: list[float] = []
    counter = Counter(1, latencies)
    publish, close = await contender(counter)
    await publish(1)  # warm up: consumer and first delivery
    await counter.done
    latencies.clear()
    counter.seen, counter.n = 0, n
    counter.done = asyncio.get_running_loop().create_future()
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
    ("limit: nats-py core API", raw, "hand-rolled publish and pull loop"),
    ("tidings NatsTransport", transport, f"publish of {BATCH}"),
    ("tidings Bus", bus, f"publish_many of {BATCH}, JSON events"),
    ("FastStream NatsBroker", faststream, f"{BATCH} concurrent publishes"),
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
    title = (
        f"B6 NATS JetStream: {n:,} events of 100 bytes end to end "
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
