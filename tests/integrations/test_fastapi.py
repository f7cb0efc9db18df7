"""``tidings.integrations.fastapi``: the bus runs while the application serves, endpoints get it
as a dependency, and the probes answer from ``bus.health()`` and ``tidings.readiness``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

import tidings
from tidings.integrations.fastapi import BusDep, readiness_router, tidings_lifespan
from tidings.testing.faults import FaultyTransport, Times
from tidings.transports.memory import MemoryTransport

FAST_RESTART = tidings.Retry(max_attempts=2, initial_delay=0.001, max_delay=0.01)


class Unreachable(MemoryTransport):
    async def ping(self) -> None:
        raise tidings.ServiceUnavailable("connection refused")


def service(bus: tidings.Bus) -> FastAPI:
    app = FastAPI(lifespan=tidings_lifespan(bus))
    app.include_router(readiness_router())

    @app.post("/notes/{text}")
    async def note(text: str, bus: BusDep) -> str:
        return (await bus.publish(tidings.Message("notes", text))).id

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as running:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_endpoints_publish_on_the_running_bus_and_shutdown_drains_it() -> None:
    bus = tidings.Bus()
    seen: list[str] = []
    release = asyncio.Event()

    @bus.subscribe("notes", group="notes")
    async def keep(message: tidings.Message) -> None:
        await release.wait()
        seen.append(message.data)

    async with serving(service(bus)) as client:
        answer = await client.post("/notes/hello")
        assert answer.status_code == 200
        assert seen == []  # accepted, not yet handled
        release.set()
    assert seen == ["hello"]  # the shutdown waited for it
    with pytest.raises(tidings.ClosedError):
        await bus.publish(tidings.Message("notes", "late"))


async def test_an_app_without_the_lifespan_says_so() -> None:
    app = FastAPI()

    @app.get("/")
    async def root(bus: BusDep) -> None: ...

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(RuntimeError, match="lifespan=tidings_lifespan"):
            await client.get("/")


async def test_a_running_bus_is_live_and_ready() -> None:
    bus = tidings.Bus()
    bus.subscribe("notes", lambda message: None, group="notes")

    async with serving(service(bus)) as client:
        live, ready = await client.get("/healthz"), await client.get("/readyz")

    assert (live.status_code, live.json()) == (200, {"live": True, "failed": []})
    assert ready.status_code == 200
    report = ready.json()
    assert (report["ready"], report["running"], report["broker"]) == (True, True, "not checked")
    assert [route["group"] for route in report["routes"]] == ["notes"]


async def test_an_unreachable_broker_makes_it_unready_but_still_live() -> None:
    async with serving(service(tidings.Bus(Unreachable()))) as client:
        live, ready = await client.get("/healthz"), await client.get("/readyz")

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["broker"] == "unreachable: connection refused"


async def test_a_consumer_that_gave_up_makes_it_neither_live_nor_ready() -> None:
    faulty = FaultyTransport(MemoryTransport(), drop_fetches=Times(1_000))
    bus = tidings.Bus(faulty, restart=FAST_RESTART)
    bus.subscribe("notes", lambda message: None, group="notes", name="notes-keeper")

    async with serving(service(bus)) as client:
        await asyncio.wait_for(bus.consumer_failed(), 10)
        live, ready = await client.get("/healthz"), await client.get("/readyz")

    assert (live.status_code, live.json()) == (503, {"live": False, "failed": ["notes-keeper"]})
    assert ready.status_code == 503
    assert [route["state"] for route in ready.json()["routes"]] == ["failed"]
