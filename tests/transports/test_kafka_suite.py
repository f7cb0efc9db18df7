"""The conformance suite on the Kafka transport (tansu broker started for the session)."""

from __future__ import annotations

import pytest
from kafka_conftest import kafka_url, tansu  # noqa: F401  # fixtures

from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import TransportSuite
from tidings.transports.kafka import KafkaTransport


class TestKafkaTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, kafka_url: str) -> TransportFactory:  # noqa: F811
        return lambda: KafkaTransport(kafka_url)
