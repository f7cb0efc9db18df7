"""Event stores for the tests of aggregates, repositories, projections and the outbox.

``store`` is a started store on each real backend in turn: memory, a SQLite file in the test's
temporary directory, and PostgreSQL (``TIDINGS_PG_DSN``) in a schema of its own, dropped after
the test; ``store_opener`` opens more (with telemetry, say), and ``store_url`` names one for
another process to open. A test needing PostgreSQL fails, naming the command that starts it,
when it is down.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Protocol

import pytest

from tidings.errors import ServiceUnavailable
from tidings.eventsourcing.store import EventStore
from tidings.telemetry import Telemetry

PG_DSN = os.environ.get("TIDINGS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
BACKENDS = ["memory", "sqlite", "postgresql"]


class StoreOpener(Protocol):
    def __call__(
        self, telemetry: Telemetry | None = None
    ) -> AbstractAsyncContextManager[EventStore]: ...


@asynccontextmanager
async def fresh_url(backend: str, directory: Path) -> AsyncIterator[str]:
    """The URL of an empty store on ``backend`` (for another process, say); on exit its
    PostgreSQL schema, if one was made, is dropped."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{directory / f'{schema}.db'}",
        "postgresql": f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}",
    }[backend]
    try:
        yield url
    finally:
        if backend == "postgresql":
            await drop_schema(schema)


async def drop_schema(schema: str) -> None:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_DSN)
    except OSError:  # the server is down (the test fails saying so): no schema was made
        return
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


@asynccontextmanager
async def open_store(
    backend: str, directory: Path, telemetry: Telemetry | None = None
) -> AsyncIterator[EventStore]:
    """A started store on ``backend``, empty, closed (and its schema dropped) on exit."""
    async with fresh_url(backend, directory) as url:
        store = EventStore(url, telemetry=telemetry)
        try:
            await store.start()
        except ServiceUnavailable as exc:
            pytest.fail(f"PostgreSQL is not reachable ({exc}); start it with: {PG_START}", False)
        try:
            yield store
        finally:
            await store.aclose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_opener(backend: str, tmp_path: Path) -> StoreOpener:
    """Opens a fresh store on the test's backend, reporting to ``telemetry`` if given: for tests
    that run their own event loop or need a store of their own."""
    return partial(open_store, backend, tmp_path)


@pytest.fixture
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty store on the test's backend, nothing opened."""
    async with fresh_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
async def store(store_opener: StoreOpener) -> AsyncIterator[EventStore]:
    async with store_opener() as started:
        yield started
