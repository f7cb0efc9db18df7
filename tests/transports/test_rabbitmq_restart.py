"""The RabbitMQ transport across a restart of the local broker.

This module stops and starts the machine's RabbitMQ node (``rabbitmqctl stop``, then
``rabbitmq-server -detached``), so it is kept to one test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from test_rabbitmq import amqp_namespace, exchange, options, restart_rabbitmq  # noqa: F401

from tidings.message import Message
from tidings.transports.rabbitmq import RabbitMQDelivery, RabbitMQOptions, RabbitMQTransport


async def test_nothing_lost_across_a_broker_restart(
    options: RabbitMQOptions,  # noqa: F811
) -> None:
    """Publishing goes on through the restart (publish waits for the connection to come back),
    the subscription resumes by itself, and a delivery held unsettled comes again."""
    transport = RabbitMQTransport(replace(options, reconnect_timeout=90))
    await transport.start()
    subscription = transport.subscribe("r.items", group="g", prefetch=50)
    received: set[str] = set()
    held: list[RabbitMQDelivery] = []
    changed = asyncio.Event()

    async def consume() -> None:
        async for batch in subscription:
            for delivery in batch:
                if not held:
                    held.append(delivery)  # settled only after the restart
                else:
                    received.add(delivery.message.id)
                    await delivery.ack()
            changed.set()

    published: list[str] = []
    publishing = True

    async def publish() -> None:
        while publishing:
            batch = [Message("r.item", b"x") for _ in range(20)]
            await transport.publish("r.items", batch)
            published.extend(m.id for m in batch)

    async def until(what: str, check: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(90):
                while not check():
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    consumer = asyncio.create_task(consume())
    publisher = asyncio.create_task(publish())
    try:
        await until("messages before the restart", lambda: len(received) >= 100)
        await restart_rabbitmq()
        after = len(published)
        await until("messages published after the restart", lambda: len(received) > after)
        publishing = False
        await publisher
        await until(
            "every published message, the held one again",
            lambda: set(published) <= received,
        )
        again = [d for d in held if d.message.id in received]
        assert again, "the delivery held during the restart came again"
        await held[0].ack()  # its channel is gone: a stale ack is dropped quietly
    finally:
        publishing = False
        await asyncio.gather(publisher, return_exceptions=True)
        await subscription.aclose()
        await consumer
        await transport.aclose()
