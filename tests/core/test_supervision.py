"""A consumer whose fetching or settling fails starts that part again, loses nothing, and says
so in ``bus.health()``; once its restart policy runs out it is ``failed``."""

from __future__ import annotations

import asyncio
import logging

import pytest
from events import UserSignedUp

import tidings
from tidings import Bus
from tidings.testing.faults import FaultyTransport, Times
from tidings.transports.memory import MemoryTransport

FAST_RESTART = tidings.Retry(max_attempts=5, initial_delay=0.001, max_delay=0.01)


async def test_fetching_restarts_after_an_outage_and_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus(FaultyTransport(MemoryTransport(), drop_fetches=Times(3)), restart=FAST_RESTART)
    handled: list[int] = []
    route = bus.subscribe(UserSignedUp, lambda e: handled.append(e.user_id))
    async with bus:
        for n in range(20):
            await bus.publish(UserSignedUp(n, "x"))
        await bus.drain()
        health = bus.health()
    assert sorted(handled) == list(range(20))
    (seen,) = health.routes
    assert seen.route == route.name
    assert seen.state == "running"
    assert seen.restarts == 3
    assert seen.last_error is not None
    assert "ServiceUnavailable" in seen.last_error
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and route.name in r.message
    ]
    assert len(warnings) == 1  # once per outage, not once per try


async def test_a_consumer_whose_restarts_run_out_has_failed() -> None:
    bus = Bus(FaultyTransport(MemoryTransport(), drop_fetches=Times(1_000)), restart=FAST_RESTART)
    bus.subscribe(UserSignedUp, lambda e: None)
    async with bus:
        failed = await asyncio.wait_for(bus.consumer_failed(), 10)
        health = bus.health()
    assert failed.state == "failed"
    assert not health.ok
    assert [r.route for r in health.failed] == [failed.route]


async def test_health_counts_what_a_consumer_holds() -> None:
    bus = Bus()
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(event: UserSignedUp) -> None:
        started.set()
        await release.wait()

    bus.subscribe(UserSignedUp, slow, timeout=None)
    async with bus:
        assert bus.health().ok
        for n in range(5):
            await bus.publish(UserSignedUp(n, "x"))
        await started.wait()
        (route,) = bus.health().routes
        assert route.in_flight == 5
        assert route.oldest_age is not None
        assert route.oldest_age >= 0
        release.set()
        await bus.drain()
        (route,) = bus.health().routes
        assert (route.in_flight, route.oldest_age) == (0, None)
    assert [r.state for r in bus.health().routes] == []
    assert not bus.health().running


async def test_close_does_not_wait_out_a_restart_backoff() -> None:
    slow_restart = tidings.Retry(max_attempts=100, initial_delay=60.0, max_delay=60.0)
    bus = Bus(FaultyTransport(MemoryTransport(), drop_fetches=Times(1_000)), restart=slow_restart)
    bus.subscribe(UserSignedUp, lambda e: None)
    await bus.start()
    for _ in range(10):  # a few turns of the loop: the first fetch fails at once
        await asyncio.sleep(0)
    assert bus.health().routes[0].state == "restarting"
    await asyncio.wait_for(bus.aclose(), 5)  # not after the minute's backoff
