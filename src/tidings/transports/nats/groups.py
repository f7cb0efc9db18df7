"""The consumer groups on NATS JetStream: the durable consumers of the transport's stream.

A group's subscription to a topic or pattern is one durable pull consumer, named by
:func:`durable_name`, its ``filter_subject`` the pattern, for messages without a key; and one
per partition of the keyed ones (:func:`partition_config`), listed together with it. Each
consumer carries its group's name as its description (consumers made before that was done are
listed under their consumer name).
Lag is what the consumer has not delivered yet (``num_pending``) plus what it delivered and was
not acknowledged (``num_ack_pending``, the in-flight count); the last activity is its last
delivery.
"""

from __future__ import annotations

import hashlib
import re

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from tidings.transports.base import GroupInfo
from tidings.transports.nats.options import NatsOptions
from tidings.transports.nats.wire import subject_for

__all__ = [
    "consumer_config",
    "consumer_configs",
    "consumers",
    "durable_name",
    "group_info",
    "partition_config",
]

_PAGE = 256
"""Consumers per page of JetStream's consumer list."""
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def durable_name(group: str, topic: str) -> str:
    """The consumer name of ``group`` on ``topic``: readable, and unique per pair."""
    digest = hashlib.blake2b(f"{group}\0{topic}".encode(), digest_size=4).hexdigest()
    readable = _NAME_UNSAFE.sub("_", f"{group}__{topic}".replace(">", "gt").replace("*", "star"))
    return f"{readable[:200]}_{digest}"


def consumer_config(group: str, topic: str, options: NatsOptions) -> ConsumerConfig:
    """The durable consumer of ``group`` on ``topic``: every message from the oldest kept,
    explicit acks, redelivered without limit (the consumer loop counts the attempts)."""
    return ConsumerConfig(
        durable_name=durable_name(group, topic),
        description=group,  # for groups(): the name is not reversible
        filter_subject=subject_for(options.prefix, topic),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=options.ack_wait,
        max_ack_pending=options.max_ack_pending,
        max_deliver=-1,
    )


def partition_config(
    group: str, topic: str, partition: int, options: NatsOptions
) -> ConsumerConfig:
    """The durable consumer of ``group`` on partition ``partition`` of ``topic``: as
    :func:`consumer_config`, on the partition's subject."""
    config = consumer_config(group, topic, options)
    config.durable_name = f"{config.durable_name}_p{partition}"
    config.filter_subject = subject_for(f"{options.partition_prefix}.{partition}", topic)
    return config


def consumer_configs(
    group: str, topic: str, partition: int | None, options: NatsOptions
) -> list[ConsumerConfig]:
    """The consumers a subscription reads from, the one it pulls from first: ``partition``'s,
    or the shared one followed by every partition's (made with it, so that the group's lag
    counts keyed messages before any subscription owns their partition)."""
    if partition is not None:
        return [partition_config(group, topic, partition, options)]
    partitions = range(options.partitions)
    shared = consumer_config(group, topic, options)
    return [shared, *(partition_config(group, topic, n, options) for n in partitions)]


async def consumers(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    """Every consumer of ``stream``, page by page."""
    found: list[ConsumerInfo] = []
    while True:
        page = await js.consumers_info(stream, offset=len(found))
        found.extend(page)
        if len(page) < _PAGE:
            return found


def group_info(consumer: ConsumerInfo, prefix: str) -> GroupInfo:
    """What ``consumer`` tells of its group; its topic is its filter subject less ``prefix``
    (and, for a partition's consumer, less the partition prefix and number)."""
    config = consumer.config
    subject = config.filter_subject or ">"
    if subject.startswith(f"{prefix}#."):
        topic = subject.removeprefix(f"{prefix}#.").split(".", 1)[1]
    else:
        topic = subject.removeprefix(f"{prefix}.")
    pending = consumer.num_pending or 0
    in_flight = consumer.num_ack_pending or 0
    delivered = consumer.delivered
    last = delivered.last_active if delivered is not None else None
    return GroupInfo(
        topic,
        config.description or consumer.name,
        pending + in_flight,
        in_flight,
        last.timestamp() if last is not None else None,
    )
