"""Shared fixtures for transport tests: the real local services, and restarting them.

A test needing a service that is down FAILS (never skips), naming the service and the command that
starts it. Addresses come from environment variables with the machine's defaults.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from brokers import NATS, POSTGRES, RABBITMQ, REDIS, restart_postgres


@pytest.fixture
def postgres_restarter(pg_dsn: str) -> Callable[[], Awaitable[None]]:
    """Restarts the local PostgreSQL (for TransportSuite's ``restart_service``)."""
    return restart_postgres


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return POSTGRES.require()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS.require()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return RABBITMQ.require()


@pytest.fixture(scope="session")
def nats_url() -> str:
    return NATS.require()


@pytest.fixture
async def pg_schema(pg_dsn: str) -> AsyncIterator[str]:
    """A schema name of its own for the test, dropped afterwards."""
    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    """A URL of a fresh SQLite file in the test's temporary directory."""
    return f"sqlite:///{os.fspath(tmp_path)}/tidings.db"
