"""The conformance suite on the in-process transport (handles sharing one broker)."""

from __future__ import annotations

import pytest

from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import TransportSuite
from tidings.transports.memory import MemoryBroker, MemoryTransport


class TestMemoryTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self) -> TransportFactory:
        broker = MemoryBroker()
        return lambda: MemoryTransport(broker=broker)
