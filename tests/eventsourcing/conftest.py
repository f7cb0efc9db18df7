"""Event stores for the tests of aggregates, repositories, projections and the outbox.

``store`` is a started store on each real backend in turn: memory, a SQLite file in the test's
temporary directory, and PostgreSQL (``TIDINGS_PG_DSN``) in a schema of its own, dropped after
the test. A test needing PostgreSQL fails, naming the command that starts it, when it is down.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

import pytest

from tidings.errors import ServiceUnavailable
from tidings.eventsourcing.store import EventStore

PG_DSN = os.environ.get("TIDINGS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
BACKENDS = ["memory", "sqlite", "postgresql"]

StoreOpener = Callable[[], AbstractAsyncContextManager[EventStore]]


@asynccontextmanager
async def open_store(backend: str, directory: Path) -> AsyncIterator[EventStore]:
    """A started store on ``backend``, empty, closed (and its schema dropped) on exit."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{directory / f'{schema}.db'}",
        "postgresql": f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}",
    }[backend]
    store = EventStore(url)
    try:
        await store.start()
    except ServiceUnavailable as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc}); start it with: {PG_START}", False)
    try:
        yield store
    finally:
        await store.aclose()
        if backend == "postgresql":
            import asyncpg

            connection = await asyncpg.connect(PG_DSN)
            try:
                await connection.execute(f"DROP SCHEMA {schema} CASCADE")
            finally:
                await connection.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_opener(backend: str, tmp_path: Path) -> StoreOpener:
    """Opens a fresh store on the test's backend: for tests that run their own event loop."""
    return partial(open_store, backend, tmp_path)


@pytest.fixture
async def store(store_opener: StoreOpener) -> AsyncIterator[EventStore]:
    async with store_opener() as started:
        yield started
