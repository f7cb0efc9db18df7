"""The conformance suite on the RabbitMQ transport (the local broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from test_rabbitmq import amqp_namespace, exchange, restart_rabbitmq  # noqa: F401  # fixtures

from tidings.testing.receiver import TransportFactory
from tidings.testing.suite_foreign import ForeignPublish
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.rabbitmq import RabbitMQOptions, RabbitMQTransport


def _text(value: bytes | None) -> str | None:
    """What a short-string property holds of ``value``: aio-pika sends text only."""
    return None if value is None else value.decode(errors="replace")


class TestRabbitMQTransport(TransportSuite):
    @pytest.fixture
    def transport_factory(self, amqp_url: str, exchange: str) -> TransportFactory:  # noqa: F811
        # Four partitions, not sixteen: a subscription has a quorum queue per partition, each
        # holding broker file handles, and some cases subscribe to twenty topics at once.
        options = RabbitMQOptions(amqp_url, exchange=exchange, partitions=4)
        return lambda: RabbitMQTransport(options)

    @pytest.fixture
    def scale_url(self, amqp_url: str, exchange: str) -> str:  # noqa: F811
        # Six partitions: two for each of three workers. With sixteen, 90 keys hash so unevenly
        # that a worker holding the five smallest partitions gets 11% of them (the cases ask 15%).
        # A short lease: the others count a killed worker out, and take its partitions, soon.
        return f"{amqp_url}?exchange={exchange}&lease=2&partitions=6"

    @pytest.fixture
    def restart_service(self) -> RestartService:
        return restart_rabbitmq

    @pytest.fixture
    async def foreign_publish(
        self,
        amqp_url: str,
        exchange: str,  # noqa: F811
    ) -> AsyncIterator[ForeignPublish]:
        """Messages published with aio-pika to the transport's exchange: ``tidings-id`` and
        ``tidings-type`` as the AMQP properties (text), the other headers as byte arrays."""
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)

        async def publish(topic: str, data: bytes, headers: dict[str, bytes]) -> None:
            native = {"tidings-id", "tidings-type"}
            message = aio_pika.Message(
                data,
                headers={k: bytearray(v) for k, v in headers.items() if k not in native},
                message_id=_text(headers.get("tidings-id")),
                type=_text(headers.get("tidings-type")),
            )
            await target.publish(message, routing_key=topic)

        yield publish
        await connection.close()
