"""``/readyz`` (``tidings.readiness.check``) while a broker is really stopped, with the restart
fixtures, and once it is started again: 503 naming the broker while it is down, 200 after, and
the consumer handles what is published then. (The cases of ``test_readiness_outages`` cut the
network instead, on every broker, without stopping a server other test runs share.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from brokers import NATS, delete_prefix, delete_streams
from test_nats_suite import start_nats, stop_nats
from test_readiness_outages import GROUP, TOPIC, readiness_until
from test_redis import start_redis, stop_redis

from tidings import readiness
from tidings.bus import Bus
from tidings.message import Message
from tidings.testing.receiver import waiting
from tidings.transports.nats import NatsOptions


class Handled:
    """The ids of the messages handled, and a way to wait for one."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self._changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.ids.add(message.id)
        self._changed.set()

    async def until(self, ident: str) -> None:
        async with waiting(60, f"message {ident} to be handled"):
            while ident not in self.ids:
                self._changed.clear()
                await self._changed.wait()


async def across_a_stop(
    url: str, stop: Callable[[], Awaitable[None]], start: Callable[[], Awaitable[None]]
) -> None:
    handled = Handled()
    bus = Bus(url)
    bus.subscribe(TOPIC, handled, group=GROUP)
    async with bus:
        assert (await readiness.check(bus)).status == 200
        await handled.until((await bus.publish({"n": 0}, topic=TOPIC)).id)
        await stop()
        try:
            down = await readiness_until(bus, False)
            assert down.status == 503, down
            assert down.broker.startswith("unreachable"), down
            assert [(r["topic"], r["group"]) for r in down.routes] == [(TOPIC, GROUP)], down
        finally:
            await start()
        up = await readiness_until(bus, True)
        assert up.broker == "ok", up
        assert [r["state"] for r in up.routes] == ["running"], up
        await handled.until((await bus.publish({"n": 1}, topic=TOPIC)).id)


async def test_readiness_while_nats_is_stopped(nats_url: str) -> None:
    if nats_url != NATS.default:
        pytest.skip("only the machine's own NATS server is ours to stop")
    tag = uuid.uuid4().hex[:10]
    url = f"{nats_url}?stream=R{tag}&prefix=r{tag}&ack_wait=2"
    try:
        await across_a_stop(url, stop_nats, start_nats)
    finally:
        await delete_streams(nats_url, NatsOptions.from_url(url))


async def test_readiness_while_redis_is_stopped(redis_url: str) -> None:
    prefix = f"ready{uuid.uuid4().hex[:8]}"
    try:
        await across_a_stop(
            f"{redis_url}?prefix={prefix}&lease=2", lambda: stop_redis(redis_url), start_redis
        )
    finally:
        await delete_prefix(redis_url, prefix)
