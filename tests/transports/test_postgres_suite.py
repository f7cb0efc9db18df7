"""The conformance suite on the PostgreSQL transport, in a schema of its own per test."""

from __future__ import annotations

import pytest

from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.postgres import PostgresTransport


class TestPostgresTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, pg_dsn: str, pg_schema: str) -> TransportFactory:
        return lambda: PostgresTransport(f"{pg_dsn}?schema={pg_schema}&lease=5")

    @pytest.fixture
    def restart_service(self, postgres_restarter: RestartService) -> RestartService:
        return postgres_restarter
