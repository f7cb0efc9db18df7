"""``tidings.readiness.check``: ready only when the bus runs, every consumer runs and the broker
answers."""

from __future__ import annotations

import asyncio

import pytest
from events import UserSignedUp

import tidings
from tidings import Bus
from tidings.readiness import check
from tidings.testing.faults import FaultyTransport, Times
from tidings.transports.memory import MemoryTransport

FAST_RESTART = tidings.Retry(max_attempts=2, initial_delay=0.001, max_delay=0.01)


class Unreachable(MemoryTransport):
    async def ping(self) -> None:
        raise tidings.ServiceUnavailable("connection refused")


class Silent(MemoryTransport):
    async def ping(self) -> None:
        await asyncio.Event().wait()


async def test_a_running_bus_is_ready_and_a_stopped_one_is_not() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda e: None)
    before = await check(bus)
    async with bus:
        during = await check(bus)
    assert (before.ready, before.status, before.running) == (False, 503, False)
    assert (during.ready, during.status, during.broker) == (True, 200, "not checked")
    assert [r["state"] for r in during.as_json()["routes"]] == ["running"]


async def test_a_failed_consumer_makes_the_bus_unready() -> None:
    bus = Bus(FaultyTransport(MemoryTransport(), drop_fetches=Times(1_000)), restart=FAST_RESTART)
    bus.subscribe(UserSignedUp, lambda e: None)
    async with bus:
        await asyncio.wait_for(bus.consumer_failed(), 10)
        readiness = await check(bus)
    assert readiness.status == 503
    assert [r["state"] for r in readiness.routes] == ["failed"]


async def test_a_broker_that_refuses_or_does_not_answer_makes_the_bus_unready() -> None:
    for transport, said in ((Unreachable(), "connection refused"), (Silent(), "no answer")):
        bus = Bus(transport)
        async with bus:
            readiness = await check(bus, timeout=0.05)
        assert readiness.status == 503
        assert readiness.broker.startswith("unreachable")
        assert said in readiness.broker


async def test_a_broker_that_does_not_answer_is_named() -> None:
    """Without an error to quote, the report says which broker kept silent."""
    async with Bus(Silent()) as bus:
        readiness = await check(bus, timeout=0.05)
    assert readiness.broker == "unreachable: Silent gave no answer within 0.05 s"


async def test_a_faulty_transport_passes_the_ping_through() -> None:
    bus = Bus(FaultyTransport(Unreachable()))
    bus.subscribe(UserSignedUp, lambda e: None)
    async with bus:
        readiness = await check(bus)
    assert readiness.status == 503
    assert readiness.broker == "unreachable: connection refused"
    await FaultyTransport(MemoryTransport()).ping()  # nothing to ask in process


async def test_the_report_names_the_worker_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``tidings run --workers N`` each process's report says which one it is."""
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda e: None)
    async with bus:
        alone = await check(bus)
        monkeypatch.setenv("TIDINGS_WORKER_ID", "3")
        third = await check(bus)
    assert (alone.as_json()["worker"], third.as_json()["worker"]) == (None, 3)
