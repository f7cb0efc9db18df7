"""The conformance suite on the Kafka transport (tansu broker started for the session)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from kafka_conftest import kafka_url, tansu  # noqa: F401  # fixtures

from tidings.testing.receiver import TransportFactory
from tidings.testing.suite_foreign import ForeignPublish
from tidings.testing.tansu import Tansu
from tidings.testing.transport_suite import TransportSuite
from tidings.transports.kafka import KafkaTransport


class TestKafkaTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, kafka_url: str) -> TransportFactory:  # noqa: F811
        return lambda: KafkaTransport(kafka_url)

    @pytest.fixture
    def scale_url(self, kafka_url: str) -> str:  # noqa: F811
        return f"{kafka_url}&partitions=12"

    @pytest.fixture
    async def foreign_publish(self, tansu: Tansu) -> AsyncIterator[ForeignPublish]:  # noqa: F811
        """Records sent with aiokafka's producer, the headers as record headers."""
        producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap)
        await producer.start()

        async def publish(topic: str, data: bytes, headers: dict[str, bytes]) -> None:
            await producer.send_and_wait(topic, data, headers=list(headers.items()))

        yield publish
        await producer.stop()
