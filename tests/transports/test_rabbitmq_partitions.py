"""Partitions on RabbitMQ against the local broker: where keyed messages go, the leases
(exclusive queues) and the members' presence (a fanout exchange) the ownership rounds use.

How the partitions spread over worker processes, fail over and move on a join is checked by the
conformance suite's scale-out cases (``test_rabbitmq_suite.py``)."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from urllib.parse import quote

import pytest
from test_rabbitmq import amqp_namespace, exchange, options, ready_count  # noqa: F401  # fixtures

from tidings.message import Message
from tidings.transports.kit.partitions import partition_of
from tidings.transports.rabbitmq import RabbitMQOptions, RabbitMQTransport
from tidings.transports.rabbitmq.leases import RabbitMQLeases
from tidings.transports.rabbitmq.wire import group_bindings, lease_queue, members_exchange


@pytest.fixture
async def transports(options: RabbitMQOptions) -> AsyncIterator[list[RabbitMQTransport]]:  # noqa: F811
    """Two transports (two connections) on one exchange, named so the broker can find them."""
    opened = []
    for _ in range(2):
        name = f"tidings-partitions-{uuid.uuid4().hex[:8]}"
        transport = RabbitMQTransport(replace(options, url=f"{options.url}?name={name}"))
        await transport.start()
        opened.append(transport)
    yield opened
    for transport in opened:
        await transport.aclose()


def leases_of(transport: RabbitMQTransport, topic: str = "t.parts") -> RabbitMQLeases:
    prefix = transport.options.exchange
    return RabbitMQLeases(
        transport.open_channel,
        transport.errors,
        lease_queue=lambda n: lease_queue(prefix, "g", topic, n),
        members=members_exchange(prefix, "g", topic),
        lease=transport.options.lease,
    )


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Ask ``condition`` once a round, as the ownership rounds do, for up to 100 rounds: the
    broker delivers the members' announcements asynchronously."""
    for _ in range(100):
        if await condition():
            return
        await asyncio.sleep(0.05)  # the round's clock
    raise AssertionError(f"not within 100 rounds: {what}")


def test_partitions_and_lease_are_options() -> None:
    parsed = RabbitMQOptions.from_url("amqp://127.0.0.1/?partitions=4&lease=2.5")
    assert (parsed.partitions, parsed.lease) == (4, 2.5)
    assert RabbitMQOptions().partitions == 16
    with pytest.raises(ValueError, match="partitions"):
        RabbitMQOptions.from_url("amqp://127.0.0.1/?partitions=0")


async def test_a_keyed_message_reaches_its_partition_queue(
    transports: list[RabbitMQTransport], amqp_url: str
) -> None:
    """Keyed messages go to the group's queue of the key's partition, unkeyed ones to the
    topic's queue."""
    transport = transports[0]
    subscription = transport.subscribe("t.routed", group="g")
    assert subscription.opening is not None
    await subscription.opening
    await transport.publish("t.routed", [Message("x", b"{}", {}, "user-7"), Message("x", b"{}")])
    topic_queue, *parts = group_bindings(transport.options.exchange, "g", "t.routed", 16)
    chosen = partition_of("user-7", 16)
    assert await ready_count(amqp_url, topic_queue.queue) == 1
    assert await ready_count(amqp_url, parts[chosen].queue) == 1
    assert sum([await ready_count(amqp_url, part.queue) for part in parts]) == 1
    await subscription.aclose()


async def test_a_lease_has_one_holder_until_released(transports: list[RabbitMQTransport]) -> None:
    a, b = leases_of(transports[0]), leases_of(transports[1])
    assert await a.hold([], [0, 1, 2], limit=3) == {0, 1, 2}
    assert await b.hold([], [0, 1, 2, 3], limit=4) == {3}, "RabbitMQ refuses a second declarer"
    assert await a.hold([0, 1, 2], [], limit=3) == {0, 1, 2}, "renewing keeps them"
    await a.release([0])
    assert await b.hold([3], [0, 1, 2], limit=4) == {0, 3}
    assert await a.hold([1, 2], [0, 3], limit=4) == {1, 2}


async def test_a_dead_connection_frees_its_leases_at_once(
    transports: list[RabbitMQTransport],
) -> None:
    """The broker deletes a holder's exclusive queues with its connection: another takes them
    at once; the holder, connected again, finds it holds none of them."""
    holder, other = transports
    a, b = leases_of(holder), leases_of(other)
    assert await a.hold([], [0, 1], limit=2) == {0, 1}
    connection = await holder.connection()
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: reconnected.set())
    await close_connection(holder.options)
    assert await b.hold([], [0, 1], limit=2) == {0, 1}
    await reconnected.wait()
    assert await a.hold([0, 1], [2], limit=3) == {2}, "the old connection's leases are gone"


async def test_members_see_each_other_and_a_leaver_goes(
    transports: list[RabbitMQTransport],
) -> None:
    """A newcomer is counted by the others, and counts them, within a round trip: each answers
    a name it has not heard yet. One that leaves is counted out at once."""
    a, b = leases_of(transports[0]), leases_of(transports[1])
    assert await a.announce() == [a.name]
    await b.announce()
    both = sorted([a.name, b.name])

    async def both_seen() -> bool:
        return await a.announce() == both and await b.announce() == both

    await eventually(both_seen, "both members counted")
    await b.leave()

    async def one_left() -> bool:
        return await a.announce() == [a.name]

    await eventually(one_left, "the leaver counted out")
    await a.leave()


async def test_a_silent_member_is_counted_out_after_its_lease(
    options: RabbitMQOptions,  # noqa: F811
) -> None:
    """A member that stops announcing (as one that died) counts for ``lease`` seconds."""
    short = RabbitMQTransport(replace(options, lease=0.3))
    await short.start()
    a, b = leases_of(short), leases_of(short)
    await a.announce()
    await b.announce()

    async def seen(count: int) -> bool:
        return len(await a.announce()) == count

    await eventually(lambda: seen(2), "both members counted")
    await eventually(lambda: seen(1), "the silent one counted out")
    await a.leave()
    await b.leave()
    await short.aclose()


async def close_connection(settings: RabbitMQOptions) -> None:
    """Close the broker's side of the connection named in ``settings.url`` (``?name=``), as a
    network failure would, through the management API (which lists a connection with its
    statistics: within ``collect_statistics_interval``, 5 s)."""
    name = settings.url.rsplit("name=", 1)[1]
    base, user, password, _ = settings.management()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {auth}"}

    def named() -> list[str]:
        request = urllib.request.Request(f"{base}connections", headers=headers)
        with urllib.request.urlopen(request) as response:
            return [
                c["name"]
                for c in json.load(response)
                if c.get("client_properties", {}).get("connection_name") == name
            ]

    def delete(connection: str) -> None:
        url = f"{base}connections/{quote(connection, safe='')}"
        urllib.request.urlopen(urllib.request.Request(url, headers=headers, method="DELETE"))

    for _ in range(40):
        if found := await asyncio.to_thread(named):
            await asyncio.to_thread(delete, found[0])
            return
        await asyncio.sleep(0.25)  # the next statistics
    raise AssertionError(f"the management API does not list the connection {name!r}")
