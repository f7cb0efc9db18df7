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
With ``--awaited``: the per-message tables of :mod:`bench.b6_awaited` (JetStreamContext.publish,
the Bus and FastStream awaiting each publish; 64 Tasks against ``publish_many``).
Run: ``python -m bench.b6_nats [--quick] [--json] [--only NAME] [--awaited [--rounds N]]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import uuid
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, StreamConfig

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
    parse_args,
    report,
    since,
    start_bus,
    windows,
)
from tidings.message import Message
from tidings.transports.nats import NatsOptions, NatsTransport

URL = os.environ.get("TIDINGS_NATS_URL", "nats://127.0.0.1:4222")
_ids = itertools.count()


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


async def raw(counter: Counter, awaited: bool = False) -> tuple[Publish, Close]:
    """The limit; ``awaited``: ``JetStreamContext.publish`` awaited message by message."""
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
    counter.watch(consumer, "the nats-py pull loop")

    async def close() -> None:
        consumer.cancel()
        await nc.close()
        await delete_streams(stream)

    if awaited:

        async def one() -> None:
            await js.publish(subject, body(), headers={"Nats-Msg-Id": str(next(_ids))})

        return lambda count: each(count, one), close
    return lambda count: windows(count, send), close


# -- tidings: the transport, then the Bus -------------------------------------------------------


async def transport(counter: Counter) -> tuple[Publish, Close]:
    stream, prefix = names("t")
    jetstream = NatsTransport(NatsOptions((URL,), stream=stream, prefix=prefix))
    await jetstream.start()
    subscription = jetstream.subscribe("ping", group="b6", prefetch=PREFETCH)
    consumer = asyncio.create_task(count_deliveries(subscription, counter))

    async def send(count: int) -> None:
        await jetstream.publish("ping", [Message("bench.b6.nats", body()) for _ in range(count)])

    async def close() -> None:
        await subscription.aclose()
        await consumer
        await jetstream.aclose()
        await delete_streams(stream, f"{stream}_DLQ")

    return lambda count: windows(count, send), close


async def bus(counter: Counter, **options: Any) -> tuple[Publish, Close]:
    stream, prefix = names("b")
    app = tidings.Bus(f"{URL}?stream={stream}&prefix={prefix}")
    send = await start_bus(app, counter, **options)

    async def close() -> None:
        await app.aclose()
        await delete_streams(stream, f"{stream}_DLQ")

    return (send if options.get("tasks") else lambda count: windows(count, send)), close


# -- FastStream ---------------------------------------------------------------------------------


async def faststream(counter: Counter, awaited: bool = False) -> tuple[Publish, Close]:
    """``awaited``: ``broker.publish`` awaited message by message."""
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

    if awaited:
        one = functools.partial(broker.publish, subject=subject, stream=stream)
        return lambda count: each(count, lambda: one(body())), close
    return lambda count: windows(count, send), close


CONTENDERS: list[tuple[str, Contender, str]] = [
    ("limit: nats-py core API", raw, "hand-rolled publish and pull loop"),
    ("tidings NatsTransport", transport, f"publish of {BATCH}"),
    *bus_rows(bus),
    ("FastStream NatsBroker", faststream, f"{BATCH} concurrent publishes"),
]
BUS_AWAITED, CONCURRENT = awaited_bus_rows(bus)
AWAITED: list[tuple[str, Contender, str]] = [
    ("raw: JetStreamContext.publish", functools.partial(raw, awaited=True), "each ack awaited"),
    BUS_AWAITED,
    ("FastStream NatsBroker", functools.partial(faststream, awaited=True), "each awaited"),
]


def main(argv: list[str] | None = None) -> object:
    args = parse_args(argv, __doc__)
    if args.awaited:
        return awaited_report(args, "NATS JetStream", AWAITED, CONCURRENT)
    return report(args, "NATS JetStream", CONTENDERS)


if __name__ == "__main__":
    main()
