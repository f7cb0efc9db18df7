"""NATS JetStream transport: ``nats://127.0.0.1:4222`` (the ``tidings[nats]`` extra).

=====================  ===================================================================
:mod:`.transport`      :class:`NatsTransport`: connection, streams, wiring
:mod:`.options`        :class:`NatsOptions` and the ``nats://`` URL
:mod:`.publish`        pipelined publishing with JetStream's confirmations
:mod:`.subscription`   pull subscriptions on a group's durable consumer, and their deliveries
:mod:`.partitioned`    keyed messages: a consumer per partition, owned by leases in a bucket
:mod:`.groups`         the durable consumers that are the groups
:mod:`.dead_letters`   dead letters in a stream of their own
:mod:`.wire`           subjects, and a Message as a NATS message's headers
:mod:`.fast_path`      nats-py's private members, for speed, with the versions tested only
=====================  ===================================================================
"""

from tidings.transports.nats.dead_letters import NatsDeadLetterStore
from tidings.transports.nats.groups import durable_name
from tidings.transports.nats.options import NatsOptions
from tidings.transports.nats.partitioned import PartitionedSubscription
from tidings.transports.nats.subscription import NatsDelivery, NatsSubscription
from tidings.transports.nats.transport import FEATURES, NatsTransport, from_url

__all__ = [
    "FEATURES",
    "NatsDeadLetterStore",
    "NatsDelivery",
    "NatsOptions",
    "NatsSubscription",
    "NatsTransport",
    "PartitionedSubscription",
    "durable_name",
    "from_url",
]
