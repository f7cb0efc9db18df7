"""Consumer groups as the transports that keep them report them: lag, in flight, dropping."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from brokers import delete_prefix, delete_streams
from kafka_conftest import kafka_url, tansu  # noqa: F401  # fixtures
from test_rabbitmq import amqp_namespace, exchange  # noqa: F401  # fixtures
from test_redis import unique_prefix

from tidings.errors import NotFound, TransportError
from tidings.message import Message
from tidings.testing.receiver import Receiver, opened, prime, unique
from tidings.transports import GroupInfo, Groups, from_url
from tidings.transports.base import Delivery
from tidings.transports.nats import NatsOptions


async def hold(delivery: Delivery) -> None:
    """Settle nothing: the delivery stays in flight."""


KEEPING_GROUPS = ["sqlite", "postgresql", "redis", "nats", "kafka", "rabbitmq"]
RECREATING = ["sqlite", "postgresql", "redis", "nats"]
"""Where a group with a running consumer can be dropped (Kafka refuses while it has members,
RabbitMQ while its queue has consumers)."""


def keeps_consuming(url: str) -> bool:
    """On RabbitMQ a subscription closed with deliveries unsettled keeps its consumer until they
    are settled: the broker hands that consumer what comes meanwhile (never handed out, so in
    flight too), and its group cannot be dropped before. RabbitMQ also counts messages in flight
    in its management statistics, refreshed every few seconds."""
    return url.startswith("amqp")


@pytest.fixture(params=KEEPING_GROUPS)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A transport URL of a namespace of the test's own, for each transport keeping groups."""
    yield from _namespace(request, request.param)


@pytest.fixture(params=RECREATING)
def recreating_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _namespace(request, request.param)


def _namespace(request: pytest.FixtureRequest, kind: str) -> Iterator[str]:
    if kind == "sqlite":
        yield request.getfixturevalue("sqlite_url")
    elif kind == "postgresql":
        pg_dsn: str = request.getfixturevalue("pg_dsn")
        yield f"{pg_dsn}?schema={request.getfixturevalue('pg_schema')}"
    elif kind == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = unique_prefix()
        yield f"{redis_url}?prefix={prefix}"
        asyncio.run(delete_prefix(redis_url, prefix))
    elif kind == "kafka":  # the session's broker: topics and groups are unique per test
        yield request.getfixturevalue("kafka_url")
    elif kind == "rabbitmq":  # an exchange of the test's own
        amqp_url: str = request.getfixturevalue("amqp_url")
        yield f"{amqp_url}?exchange={request.getfixturevalue('exchange')}"
    else:
        nats_url: str = request.getfixturevalue("nats_url")
        tag = uuid.uuid4().hex[:10]
        options = NatsOptions.from_url(f"{nats_url}?stream=G{tag}&prefix=g{tag}&storage=memory")
        yield f"{nats_url}?stream=G{tag}&prefix=g{tag}&storage=memory"
        asyncio.run(delete_streams(nats_url, options))


def by_group(groups: list[GroupInfo], topic: str) -> dict[str, GroupInfo]:
    return {info.group: info for info in groups if info.topic == topic}


async def listed(
    transport: Groups, topic: str, ready: Callable[[dict[str, GroupInfo]], bool], within: float
) -> dict[str, GroupInfo]:
    """The groups on ``topic``, asked again for up to ``within`` seconds until ``ready``."""
    deadline = time.monotonic() + within
    while True:
        groups = by_group(await transport.groups(), topic)
        if ready(groups) or time.monotonic() > deadline:
            return groups
        await asyncio.sleep(0.5)


async def drop_once_settled(transport: Groups, topic: str, group: str, receiver: Receiver) -> None:
    """Drop ``group`` once what its closed ``receiver`` holds is settled; refused before."""
    with pytest.raises(TransportError, match="consumers"):
        await transport.drop_group(topic, group)
    for delivery in receiver.deliveries:
        await delivery.nack()  # its channel closes once all are settled
    async with asyncio.timeout(10):
        while True:
            try:
                await transport.drop_group(topic, group)
                return
            except TransportError:
                await asyncio.sleep(0.1)


async def test_groups_report_their_lag_and_can_be_dropped(url: str) -> None:
    topic = unique("orders")
    async with opened(lambda: from_url(url)) as transport:
        assert isinstance(transport, Groups)
        fast_group, slow_group = unique("fast"), unique("slow")  # unique on a shared Kafka
        fast = Receiver(transport.subscribe(topic, group=fast_group))
        slow = Receiver(transport.subscribe(topic, group=slow_group), settle=hold)
        probes = await prime(transport, topic, [fast, slow])
        started = time.time()
        await transport.publish(topic, [Message("order", b"{}") for _ in range(5)])
        await fast.until(lambda: len(fast.deliveries) == 5, "fast's messages")
        await slow.until(lambda: len(slow.deliveries) == 5, "slow's messages")
        await fast.aclose()  # writes the acks
        await slow.aclose()
        await transport.publish(topic, [Message("order", b"{}") for _ in range(3)])

        stale = 30.0 if keeps_consuming(url) else 0.0
        groups = await listed(
            transport,
            topic,
            lambda g: {fast_group, slow_group} <= set(g) and g[slow_group].lag >= 8,
            within=stale,
        )

        assert set(groups) == {fast_group, slow_group}
        assert groups[fast_group].lag == 3, "published after it stopped"
        # 5 in flight and 3 new; where acks are committed in order (Kafka), a probe from priming
        # that arrived behind the held messages is not committed either
        assert 8 <= groups[slow_group].lag <= 8 + probes - 1, "5 in flight and 3 new"
        assert groups[slow_group].in_flight in ((5, 8, None) if keeps_consuming(url) else (5, None))
        active = groups[slow_group].last_active
        assert active is None or active >= started - 1

        if keeps_consuming(url):
            await drop_once_settled(transport, topic, slow_group, slow)
        else:
            await transport.drop_group(topic, slow_group)
        assert set(by_group(await transport.groups(), topic)) == {fast_group}
        with pytest.raises(NotFound, match="slow"):
            await transport.drop_group(topic, slow_group)


async def test_a_running_consumer_of_a_dropped_group_starts_again(recreating_url: str) -> None:
    """Dropping the group of a consumer that still runs does not leave it deaf."""
    topic = unique("orders")
    async with opened(lambda: from_url(recreating_url)) as transport:
        assert isinstance(transport, Groups)
        receiver = Receiver(transport.subscribe(topic, group="g"))
        await prime(transport, topic, [receiver])
        await transport.drop_group(topic, "g")
        sent = Message("order", b"{}")
        await transport.publish(topic, [sent])
        await receiver.until_ids([sent.id])
        assert [info.group for info in await transport.groups() if info.topic == topic] == ["g"]


async def test_a_kafka_group_reading_other_topics_is_not_dropped(kafka_url: str) -> None:  # noqa: F811
    """A Kafka group spans topics and is deleted whole: dropping it for one topic is refused."""
    orders, refunds, group = unique("orders"), unique("refunds"), unique("billing")
    async with opened(lambda: from_url(kafka_url)) as transport:
        assert isinstance(transport, Groups)
        for topic in (orders, refunds):
            receiver = Receiver(transport.subscribe(topic, group=group))
            await prime(transport, topic, [receiver])
            await receiver.aclose()

        with pytest.raises(TransportError, match="dropped as a whole"):
            await transport.drop_group(orders, group)
        assert {info.topic for info in await transport.groups() if info.group == group} == {
            orders,
            refunds,
        }
