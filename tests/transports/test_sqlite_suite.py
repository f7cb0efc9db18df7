"""The conformance suite on the SQLite transport."""

from __future__ import annotations

import pytest

from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import TransportSuite
from tidings.transports.sqlite import SqliteTransport


class TestSqliteTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, sqlite_url: str) -> TransportFactory:
        return lambda: SqliteTransport(sqlite_url)
