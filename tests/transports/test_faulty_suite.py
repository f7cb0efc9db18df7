"""The conformance suite on a FaultyTransport with no fault armed: the wrapper passes the
transport protocol through unchanged (here around the in-process transport)."""

from __future__ import annotations

import pytest

from tidings.testing.faults import FaultyTransport
from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import TransportSuite
from tidings.transports.memory import MemoryBroker, MemoryTransport


class TestFaultyTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self) -> TransportFactory:
        broker = MemoryBroker()
        return lambda: FaultyTransport(MemoryTransport(broker=broker))
