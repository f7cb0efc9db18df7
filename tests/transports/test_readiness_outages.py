"""A broker outage, on every broker: what ``tidings.readiness.check`` (``/readyz``) answers, and
what becomes of the consumer and of the messages it held.

The outage is a :class:`~tidings.testing.faults.TcpProxy` between the bus and the broker: the
broker, which other test runs share, keeps running. Each case: ready (200); the network is cut
while the handler holds messages; not ready (503) naming the broker and the route; restored;
ready again; every message accepted before the cut handled, and one published after the restore
handled by the same consumer. The bus must also be ready again with no message coming to show
it when the network is cut as it starts: on NATS, Kafka and RabbitMQ, whose consumers fail then,
and on Redis and PostgreSQL, whose consumers wait for the broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
from brokers import delete_prefix, delete_streams
from kafka_conftest import TEST_QUERY
from test_rabbitmq import amqp_namespace, exchange  # noqa: F401  # fixtures

from tidings import readiness
from tidings.bus import Bus
from tidings.message import Message
from tidings.readiness import Readiness
from tidings.testing.faults import TcpProxy
from tidings.testing.receiver import waiting
from tidings.testing.tansu import Tansu
from tidings.transports.nats import NatsOptions

TOPIC = "outage.tick"
GROUP = "outage"
HELD = 5
"""Messages published before the cut; the handler holds them until the network is cut."""

outages = pytest.mark.parametrize("hold", [False, True], ids=["reset", "silent"])
"""Connections refused at once, or left unanswered (a probe must time out, not hang)."""
routes = pytest.mark.parametrize("ordered", [False, True], ids=["plain", "ordered"])
"""A route whose messages go through the topic, or one keeping keyed messages in order."""


class Handler:
    """Records the id of every message it handles; holds each call until ``release``."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self._changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.started.set()
        await self.release.wait()
        self.handled.append(message.id)
        self._changed.set()

    async def until(self, done: Callable[[list[str]], bool], what: str) -> None:
        """Return once ``done(handled)`` holds; fail naming ``what`` after 60 s."""
        async with waiting(60, what):
            while not done(self.handled):
                self._changed.clear()
                await self._changed.wait()


async def readiness_until(bus: Bus, ready: bool) -> Readiness:
    """Probe ``bus`` as an orchestrator does until it answers ``ready``; each probe must answer
    within its own timeout, never hang."""
    reports: list[Readiness] = []
    try:
        async with waiting(60, f"readiness {'200' if ready else '503'}"):
            while True:
                async with waiting(10, "a readiness probe to answer"):
                    report = await readiness.check(bus, timeout=2.0)
                if report.ready == ready:
                    return report
                reports.append(report)
                await asyncio.sleep(0.1)  # the probe's period: nothing to await between probes
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}; the last report: {reports[-1:]}") from None


async def not_ready_while_cut(bus: Bus, proxy: TcpProxy) -> None:
    """The probe answers 503 naming the broker it cannot reach, and again on a later probe, for
    which the client tries a new connection."""
    first = await readiness_until(bus, False)
    async with waiting(10, "a readiness probe to answer"):
        second = await readiness.check(bus, timeout=2.0)
    for down in (first, second):
        assert down.status == 503, down
        assert down.broker.startswith("unreachable"), down
        assert proxy.address in down.broker, down
        assert [(r["topic"], r["group"]) for r in down.routes] == [(TOPIC, GROUP)], down


async def across_an_outage(url: str, proxy: TcpProxy, hold: bool) -> None:
    """The outage case on the broker at ``url`` (not yet redirected through ``proxy``); with
    ``hold``, connections made during the outage get no answer instead of a reset."""
    handler = Handler()
    bus = Bus(proxy.redirect(url))
    bus.subscribe(TOPIC, handler, group=GROUP)
    async with bus:
        assert (await readiness.check(bus)).status == 200
        accepted = {(await bus.publish({"n": n}, topic=TOPIC)).id for n in range(HELD)}
        try:
            async with waiting(60, "the handler to take the first message"):
                await handler.started.wait()
            await proxy.cut(hold=hold)
            await not_ready_while_cut(bus, proxy)
            handler.release.set()  # its acks meet the outage
            await handler.until(bool, "a message handled during the outage")
        finally:
            handler.release.set()
            await proxy.restore()
        up = await readiness_until(bus, True)
        assert up.broker == "ok"
        assert [r["state"] for r in up.routes] == ["running"], up
        await handler.until(accepted.issubset, "every message accepted before the cut")
        after = (await bus.publish({"n": HELD}, topic=TOPIC)).id
        await handler.until(lambda handled: after in handled, "the message sent after the restore")


@outages
async def test_redis_outage(redis_url: str, hold: bool) -> None:
    prefix = f"outage{uuid.uuid4().hex[:8]}"
    try:
        async with TcpProxy("127.0.0.1", _port(redis_url)) as proxy:
            await across_an_outage(f"{redis_url}?prefix={prefix}&lease=2", proxy, hold)
    finally:
        await delete_prefix(redis_url, prefix)


@outages
async def test_nats_outage(nats_url: str, hold: bool) -> None:
    tag = uuid.uuid4().hex[:10]
    url = f"{nats_url}?stream=O{tag}&prefix=o{tag}&ack_wait=2"
    try:
        async with TcpProxy("127.0.0.1", _port(nats_url)) as proxy:
            await across_an_outage(url, proxy, hold)
    finally:
        await delete_streams(nats_url, NatsOptions.from_url(url))


@outages
async def test_rabbitmq_outage(amqp_url: str, exchange: str, hold: bool) -> None:  # noqa: F811
    async with TcpProxy("127.0.0.1", _port(amqp_url)) as proxy:
        await across_an_outage(f"{amqp_url}?exchange={exchange}", proxy, hold)


@outages
async def test_postgres_outage(pg_dsn: str, pg_schema: str, hold: bool) -> None:
    async with TcpProxy("127.0.0.1", _port(pg_dsn)) as proxy:
        await across_an_outage(f"{pg_dsn}?schema={pg_schema}&lease=2", proxy, hold)


@pytest.fixture
async def kafka_behind_a_proxy() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A tansu broker of this test's own that tells clients to connect through the proxy: its
    URL (not yet redirected) and the proxy."""
    broker = Tansu()
    async with TcpProxy("127.0.0.1", broker.port) as proxy:
        broker.advertised = proxy.address
        broker.start()
        try:
            yield f"{broker.url}?{TEST_QUERY}", proxy
        finally:
            broker.stop()


@outages
async def test_kafka_outage(kafka_behind_a_proxy: tuple[str, TcpProxy], hold: bool) -> None:
    await across_an_outage(*kafka_behind_a_proxy, hold)


async def restarting(bus: Bus) -> None:
    """Return once the bus's one route reads ``restarting``: its consumer failed."""
    async with waiting(60, "the consumer to fail and start again"):
        while True:
            if bus.health().routes[0].state == "restarting":
                return
            await asyncio.sleep(0.05)  # polling the health: nothing tells


async def idle_across_an_outage(
    url: str, proxy: TcpProxy, *, fails: bool = True, ordered: bool = False
) -> None:
    """The network is cut as the bus starts, before its consumer reached the broker. A consumer
    that ``fails`` then (NATS, Kafka, RabbitMQ) reads ``restarting``; the others wait for the
    broker (Redis, PostgreSQL), and the probe answers 503. Once the broker answers, the consumer
    runs, and the bus is ready, although no message comes to show it. A message published then
    is handled (on an ``ordered`` route a keyed one, which goes through the key's partition)."""
    handler = Handler()
    handler.release.set()
    bus = Bus(proxy.redirect(url))
    bus.subscribe(TOPIC, handler, group=GROUP, ordered=ordered)
    async with bus:
        await proxy.cut()
        if fails:
            await restarting(bus)
        else:
            await readiness_until(bus, False)
        await proxy.restore()
        up = await readiness_until(bus, True)
        assert [r["state"] for r in up.routes] == ["running"], up
        key = "k" if ordered else None
        after = (await bus.publish({"n": 0}, topic=TOPIC, key=key)).id
        await handler.until(lambda handled: after in handled, "the message sent after the restore")


async def test_an_idle_nats_consumer_that_restarted_is_ready_once_nats_is_back(
    nats_url: str,
) -> None:
    tag = uuid.uuid4().hex[:10]
    url = f"{nats_url}?stream=O{tag}&prefix=o{tag}"
    try:
        async with TcpProxy("127.0.0.1", _port(nats_url)) as proxy:
            await idle_across_an_outage(url, proxy)
    finally:
        await delete_streams(nats_url, NatsOptions.from_url(url))


async def test_an_idle_kafka_consumer_that_restarted_is_ready_once_kafka_is_back(
    kafka_behind_a_proxy: tuple[str, TcpProxy],
) -> None:
    await idle_across_an_outage(*kafka_behind_a_proxy)


@routes
async def test_an_idle_rabbitmq_consumer_that_restarted_is_ready_once_rabbitmq_is_back(
    amqp_url: str,
    exchange: str,  # noqa: F811
    ordered: bool,
) -> None:
    async with TcpProxy("127.0.0.1", _port(amqp_url)) as proxy:
        await idle_across_an_outage(f"{amqp_url}?exchange={exchange}", proxy, ordered=ordered)


async def test_a_rabbitmq_group_whose_queue_an_outage_kept_from_being_declared_gets_messages(
    amqp_url: str,
    exchange: str,  # noqa: F811
) -> None:
    """The network is cut as the bus starts, before the group's queue was declared. A message
    published at once when the network is back (the consumer may still be waiting to start
    again) reaches the group: its queue is declared before publishing goes on."""
    handler = Handler()
    handler.release.set()
    async with TcpProxy("127.0.0.1", _port(amqp_url)) as proxy:
        bus = Bus(proxy.redirect(f"{amqp_url}?exchange={exchange}"))
        bus.subscribe(TOPIC, handler, group=GROUP)
        async with bus:
            await proxy.cut()
            await restarting(bus)
            await proxy.restore()
            sent = (await bus.publish({"n": 0}, topic=TOPIC)).id
            await handler.until(lambda handled: sent in handled, "the message sent once back")


@routes
async def test_an_idle_redis_consumer_is_ready_once_redis_is_back(
    redis_url: str, ordered: bool
) -> None:
    prefix = f"outage{uuid.uuid4().hex[:8]}"
    try:
        async with TcpProxy("127.0.0.1", _port(redis_url)) as proxy:
            url = f"{redis_url}?prefix={prefix}&lease=2"
            await idle_across_an_outage(url, proxy, fails=False, ordered=ordered)
    finally:
        await delete_prefix(redis_url, prefix)


@routes
async def test_an_idle_postgres_consumer_is_ready_once_postgres_is_back(
    pg_dsn: str, pg_schema: str, ordered: bool
) -> None:
    async with TcpProxy("127.0.0.1", _port(pg_dsn)) as proxy:
        url = f"{pg_dsn}?schema={pg_schema}&lease=2"
        await idle_across_an_outage(url, proxy, fails=False, ordered=ordered)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port
