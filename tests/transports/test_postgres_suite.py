"""The conformance suite on the PostgreSQL transport, in a schema of its own per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.transports.conftest import restart_postgres
from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.postgres import PostgresTransport


@pytest.fixture
async def pg_schema(pg_dsn: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


class TestPostgresTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, pg_dsn: str, pg_schema: str) -> TransportFactory:
        return lambda: PostgresTransport(f"{pg_dsn}?schema={pg_schema}&lease=5")

    @pytest.fixture
    def restart_service(self) -> RestartService:
        return restart_postgres
