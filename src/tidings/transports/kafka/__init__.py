"""Kafka transport: ``kafka://127.0.0.1:9092`` (aiokafka).

A tidings topic is a Kafka topic of the same name (:mod:`.topics`). A message's ``key`` is the
record key, so Kafka's default partitioner (murmur2, as in the Java client) keeps one key on one
partition and therefore in order; messages without a key are spread over the partitions one
``publish`` call at a time (:mod:`.publish`). The envelope travels in record headers
(:mod:`.wire`), the payload as the record value, ``message.time`` as the record timestamp.

A group is a Kafka consumer group (:mod:`.groups`), and a subscription one member of it
(:mod:`.subscription`): offsets are committed only up to the oldest delivery not yet settled
(:mod:`.commits`), so a message is committed only after its handler finished. Kafka has no
redelivery, so ``nack(delay)`` publishes the message again to its topic after the delay, with the
next attempt number, addressed to the failing group; the original is committed once that copy is
stored. Dead letters are records of the topic ``tidings.dead-letters`` (:mod:`.dead_letters`).

aiokafka reconnects by itself; errors it gives up on are raised as TransportError, and as
ServiceUnavailable when no broker answers (:func:`.options.error_map`).

=====================  ===================================================================
:mod:`.transport`      :class:`KafkaTransport`: lifecycle, producer and admin, wiring
:mod:`.options`        :class:`KafkaOptions` from a ``kafka://`` URL; the error map
:mod:`.publish`        records appended to shared batches, one batch per partition in flight
:mod:`.subscription`   a consumer group member: deliveries, nack by publishing again
:mod:`.commits`        offsets committed in bulk, never giving up while the member lives
:mod:`.dead_letters`   dead letters as records of a topic, removed by tombstones
:mod:`.groups`         consumer groups listed with their lag, and dropped
:mod:`.topics`         topic names checked, wildcard patterns as regular expressions
:mod:`.wire`           a message's envelope as record headers
=====================  ===================================================================
"""

from tidings.transports.kafka.dead_letters import KafkaDeadLetterStore
from tidings.transports.kafka.options import KafkaOptions
from tidings.transports.kafka.subscription import KafkaDelivery, KafkaSubscription
from tidings.transports.kafka.transport import FEATURES, KafkaTransport, from_url

__all__ = [
    "FEATURES",
    "KafkaDeadLetterStore",
    "KafkaDelivery",
    "KafkaOptions",
    "KafkaSubscription",
    "KafkaTransport",
    "from_url",
]
