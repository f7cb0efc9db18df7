"""``tidings.readiness.check`` (what ``/readyz`` answers) across a broker outage: 200 while the
broker answers, 503 while it is down, 200 again once it is back and the consumers resumed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from brokers import NATS
from test_nats import delete_streams
from test_nats_suite import start_nats, stop_nats
from test_redis import delete_prefix, start_redis, stop_redis

from tidings import readiness
from tidings.bus import Bus
from tidings.message import Message
from tidings.readiness import Readiness
from tidings.testing.receiver import waiting
from tidings.transports.nats import NatsOptions


def _ignore(message: Message) -> None:
    pass


async def _ready_across_an_outage(
    url: str, stop: Callable[[], Awaitable[None]], start: Callable[[], Awaitable[None]]
) -> None:
    bus = Bus(url)
    bus.subscribe("ops.ready", _ignore, group="ready")
    async with bus:
        before = await readiness.check(bus)
        assert before.status == 200, before
        await stop()
        try:
            during = await readiness.check(bus)
        finally:
            await start()
        assert during.status == 503, during
        assert during.broker.startswith("unreachable"), during
        after: Readiness | None = None
        async with waiting(60, "the bus to be ready again"):
            while True:
                after = await readiness.check(bus)
                if after.ready:
                    break
                await asyncio.sleep(0.1)  # polling the probe, as an orchestrator does
        assert after.status == 200
        assert after.broker == "ok"


@pytest.fixture
async def redis_prefixed(redis_url: str) -> AsyncIterator[str]:
    prefix = f"ready{uuid.uuid4().hex[:8]}"
    yield f"{redis_url}?prefix={prefix}"
    await delete_prefix(redis_url, prefix)


@pytest.fixture
async def nats_streamed(nats_url: str) -> AsyncIterator[str]:
    tag = uuid.uuid4().hex[:10]
    url = f"{nats_url}?stream=R{tag}&prefix=r{tag}"
    yield url
    await delete_streams(nats_url, NatsOptions.from_url(url))


async def test_redis_outage(redis_url: str, redis_prefixed: str) -> None:
    await _ready_across_an_outage(redis_prefixed, lambda: stop_redis(redis_url), start_redis)


async def test_nats_outage(nats_url: str, nats_streamed: str) -> None:
    if nats_url != NATS.default:
        pytest.skip("only the machine's own NATS is ours to stop")
    await _ready_across_an_outage(nats_streamed, stop_nats, start_nats)
