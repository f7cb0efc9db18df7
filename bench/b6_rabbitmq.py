"""B6 on RabbitMQ: 100,000 events of 100 bytes published and handled end to end, in one process.

Every contender does the same durable work on the local broker (``TIDINGS_AMQP_URL``, default
``amqp://guest:guest@127.0.0.1:5672/``): persistent messages through a durable topic exchange into
a quorum queue, publisher confirms awaited, manual acks after the handler ran.

* limit: aiormq used directly and well (pipelined confirmed publishes, prefetch, multiple acks)
* tidings transport: ``RabbitMQTransport.publish`` in batches of 1,000 and a subscription
* tidings Bus: ``Bus(url)`` with a subscribed handler, ``publish_many`` in batches of 1,000
* FastStream: ``RabbitBroker`` with a subscriber, 1,000 concurrent ``broker.publish`` at a time

Then publish-to-handler latency (p50/p99) at a steady 1,000 events/s, one publish per event.
With ``--awaited``: the per-message tables of :mod:`bench.b6_awaited` (the raw client, the Bus and
FastStream awaiting each publish; 64 Tasks against ``publish_many``).
Run: ``python -m bench.b6_rabbitmq [--quick] [--json] [--only NAME] [--awaited [--rounds N]]``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import Awaitable
from typing import Any, cast

import aiormq
from pamqp.commands import Basic

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
from tidings.transports.rabbitmq import RabbitMQOptions, RabbitMQTransport
from tidings.transports.rabbitmq.wire import members_exchange, partitioned_exchange

URL = os.environ.get("TIDINGS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TOPIC = "bench.b6.ping"

# -- the limit: aiormq --------------------------------------------------------------------------


async def raw(counter: Counter, awaited: bool = False) -> tuple[Publish, Close]:
    """The limit; ``awaited``: ``basic_publish`` awaited (its confirmation) one by one."""
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

    async def send(count: int) -> None:
        await asyncio.gather(*[one() for _ in range(count)])

    async def publish(count: int) -> None:
        if count == 1 or awaited:
            await each(count, one)
        else:  # two windows in flight, like tidings does
            await windows(count, send, size=512)

    async def close() -> None:
        await sub.close()  # before the queue goes: no consumer the broker would cancel
        await pub.queue_delete(name)
        await pub.exchange_delete(name)
        await connection.close()

    return publish, close


# -- tidings: the transport, then the Bus -------------------------------------------------------


async def transport(counter: Counter) -> tuple[Publish, Close]:
    exchange = f"b6-t-{uuid.uuid4().hex[:8]}"
    rabbit = RabbitMQTransport(RabbitMQOptions(URL, exchange=exchange))
    await rabbit.start()
    subscription = rabbit.subscribe(TOPIC, group="b6", prefetch=PREFETCH)
    consumer = asyncio.create_task(count_deliveries(subscription, counter))

    async def send(count: int) -> None:
        await rabbit.publish(TOPIC, [Message(TOPIC, body()) for _ in range(count)])

    async def close() -> None:
        await subscription.aclose()
        await consumer
        await rabbit.aclose()
        await _drop(exchange)

    return lambda count: one_by_one(count, send), close


async def bus(counter: Counter, **options: Any) -> tuple[Publish, Close]:
    exchange = f"b6-b-{uuid.uuid4().hex[:8]}"
    app = tidings.Bus(f"{URL}?exchange={exchange}")
    send = await start_bus(app, counter, **options)

    async def close() -> None:
        await app.aclose()
        await _drop(exchange)

    return (send if options.get("tasks") else lambda count: one_by_one(count, send)), close


# -- FastStream ---------------------------------------------------------------------------------


async def faststream(counter: Counter, awaited: bool = False) -> tuple[Publish, Close]:
    """``awaited``: ``broker.publish`` awaited one by one."""
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

    async def send(count: int) -> None:
        await asyncio.gather(*[one() for _ in range(count)])

    async def close() -> None:
        await broker.stop()
        await _delete(name, name)

    if awaited:
        return lambda count: each(count, one), close
    return lambda count: one_by_one(count, send), close


async def _delete(queue: str, exchange: str) -> None:
    connection = await aiormq.connect(URL)
    channel = await connection.channel()
    await channel.queue_delete(queue)
    await channel.exchange_delete(exchange)
    await connection.close()


async def _drop(exchange: str) -> None:
    """Delete what a tidings contender declared on ``exchange``: the group's queues (the
    topic's and each partition's) and the exchanges. Quorum queues left behind run after run
    slow the broker down until it stops answering."""
    rabbit = RabbitMQTransport(RabbitMQOptions(URL, exchange=exchange))
    try:
        await rabbit.drop_group(TOPIC, "b6")
        channel = await rabbit.open_channel()
        for name in (
            exchange,
            partitioned_exchange(exchange),
            members_exchange(exchange, "b6", TOPIC),
        ):
            await channel.exchange_delete(name)
        await channel.close()
    finally:
        await rabbit.aclose()


CONTENDERS: list[tuple[str, Contender, str]] = [
    ("limit: aiormq", raw, "pipelined confirms, multiple acks"),
    ("tidings RabbitMQTransport", transport, f"publish batches of {BATCH}"),
    *bus_rows(bus),
    ("FastStream RabbitBroker", faststream, f"{BATCH} concurrent publishes"),
]
BUS_AWAITED, CONCURRENT = awaited_bus_rows(bus)
AWAITED: list[tuple[str, Contender, str]] = [
    ("raw: aiormq basic_publish", functools.partial(raw, awaited=True), "each confirm awaited"),
    BUS_AWAITED,
    ("FastStream RabbitBroker", functools.partial(faststream, awaited=True), "each awaited"),
]


def main(argv: list[str] | None = None) -> object:
    args = parse_args(argv, __doc__)
    if args.awaited:
        return awaited_report(args, "RabbitMQ", AWAITED, CONCURRENT)
    return report(args, "RabbitMQ", CONTENDERS)


if __name__ == "__main__":
    main()
