"""The conformance suite on the PostgreSQL transport, in a schema of its own per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from test_sqlite_suite import raw_headers

from tidings.testing.receiver import TransportFactory
from tidings.testing.suite_foreign import ForeignPublish
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.postgres import PostgresTransport


def _text(value: bytes | None) -> str | None:
    """What a text column takes of ``value``: PostgreSQL refuses text that is not UTF-8."""
    return None if value is None else value.decode(errors="replace").replace("\x00", "")


def _seconds(value: bytes | None) -> float:
    try:
        return float(value or b"")
    except ValueError:  # a float8 column cannot hold garbage
        return time.time()


class TestPostgresTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, pg_dsn: str, pg_schema: str) -> TransportFactory:
        return lambda: PostgresTransport(f"{pg_dsn}?schema={pg_schema}&lease=5")

    @pytest.fixture
    def scale_url(self, pg_dsn: str, pg_schema: str) -> str:
        return f"{pg_dsn}?schema={pg_schema}&lease=2"

    @pytest.fixture
    def restart_service(self, postgres_restarter: RestartService) -> RestartService:
        return postgres_restarter

    @pytest.fixture
    async def foreign_publish(self, pg_dsn: str, pg_schema: str) -> AsyncIterator[ForeignPublish]:
        """Rows written with asyncpg through the schema's publish function, which also hands
        them to the groups' pending lists; the headers column as :func:`raw_headers` makes it."""
        conn = await asyncpg.connect(pg_dsn)

        async def publish(topic: str, data: bytes, headers: dict[str, bytes]) -> None:
            get = headers.get
            await conn.execute(
                f'SELECT "{pg_schema}".publish($1, $2, $3, $4, $5, $6, $7, $8)',
                topic,
                [_text(get("tidings-id")) or str(uuid.uuid4())],
                [_text(get("tidings-type")) or topic],
                [_text(get("tidings-key"))],
                [raw_headers(headers)],
                [data],
                [_seconds(get("tidings-time"))],
                f"tidings_{pg_schema}",
            )

        yield publish
        await conn.close()
