"""RabbitMQ transport (aio-pika): ``amqp://guest:guest@127.0.0.1:5672/``.

=====================  ===================================================================
:mod:`.transport`      the transport: connection, topology, wiring (topology documented there)
:mod:`.options`        its settings and URL parsing
:mod:`.publish`        confirmed publishing, delayed copies for ``nack(delay)``
:mod:`.subscription`   consumers on the groups' queues, deliveries, bulk acks
:mod:`.dead_letters`   dead letters in a durable queue
:mod:`.groups`         the groups' queues, through the management HTTP API
:mod:`.wire`           names and AMQP properties
=====================  ===================================================================
"""

from tidings.transports.rabbitmq.dead_letters import RabbitMQDeadLetterStore
from tidings.transports.rabbitmq.options import RabbitMQOptions
from tidings.transports.rabbitmq.subscription import RabbitMQDelivery, RabbitMQSubscription
from tidings.transports.rabbitmq.transport import FEATURES, RabbitMQTransport, from_url
from tidings.transports.rabbitmq.wire import binding_key, delay_bucket, queue_name

__all__ = [
    "FEATURES",
    "RabbitMQDeadLetterStore",
    "RabbitMQDelivery",
    "RabbitMQOptions",
    "RabbitMQSubscription",
    "RabbitMQTransport",
    "binding_key",
    "delay_bucket",
    "from_url",
    "queue_name",
]
