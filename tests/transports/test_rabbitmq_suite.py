"""The conformance suite on the RabbitMQ transport (the local broker)."""

from __future__ import annotations

import pytest
from test_rabbitmq import amqp_namespace, exchange, restart_rabbitmq  # noqa: F401  # fixtures

from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.rabbitmq import RabbitMQOptions, RabbitMQTransport


class TestRabbitMQTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, amqp_url: str, exchange: str) -> TransportFactory:  # noqa: F811
        options = RabbitMQOptions(amqp_url, exchange=exchange)
        return lambda: RabbitMQTransport(options)

    @pytest.fixture
    def restart_service(self) -> RestartService:
        return restart_rabbitmq
