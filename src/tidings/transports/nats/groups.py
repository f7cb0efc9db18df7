"""The consumer groups on NATS JetStream: the durable consumers of the transport's stream.

Each consumer carries its group's name as its description (consumers made before that was
done are listed under their consumer name) and its topic as its filter subject. Lag is what the
consumer has not delivered yet (``num_pending``) plus what it delivered and was not acknowledged
(``num_ack_pending``, the in-flight count); the last activity is its last delivery.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from tidings.transports.base import GroupInfo

__all__ = ["consumers", "group_info"]

_PAGE = 256
"""Consumers per page of JetStream's consumer list."""


async def consumers(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    """Every consumer of ``stream``, page by page."""
    found: list[ConsumerInfo] = []
    while True:
        page = await js.consumers_info(stream, offset=len(found))
        found.extend(page)
        if len(page) < _PAGE:
            return found


def group_info(consumer: ConsumerInfo, prefix: str) -> GroupInfo:
    """What ``consumer`` tells of its group; its topic is its filter subject less ``prefix``."""
    config = consumer.config
    subject = config.filter_subject or ">"
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
