"""What tidings puts on RabbitMQ: queue and binding names, and a Message as AMQP properties.

Names
    A group's queue is ``<exchange>:<group>:<topic>`` (``+`` for ``*``, ``#`` for ``>``), bound
    with :func:`binding_key` and the binding arguments :data:`GROUP` and :data:`TOPIC` (which let
    ``groups()`` name it again: a long or odd name ends in a digest). Its partition ``n`` is the
    queue named with the suffix ``#n`` (:func:`~tidings.transports.kit.partitions.partition_name`),
    bound to the exchange :func:`partitioned_exchange` with :func:`partition_key`; that
    partition's lease is the exclusive queue with the suffix ``#n.lease``, and the group's members
    meet on the fanout exchange with the suffix ``#members``. Delay queues are
    ``<exchange>.delay.<ms>`` (:func:`delay_bucket`), dead letters ``<exchange>.dead-letters``.
Properties
    ``message_id`` and ``type`` natively, time and key as ``tidings-*`` headers (see
    :mod:`tidings.transports.kit.wire`), persistent. A delayed copy also carries the topic it was
    published to (:data:`TOPIC`) and the attempt it will be.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pamqp.commands import Basic

from tidings.message import Message
from tidings.transports.kit.partitions import partition_name
from tidings.transports.kit.wire import ATTEMPT, KEY, TIME, from_wire

if TYPE_CHECKING:
    from aiormq.abc import DeliveredMessage

__all__ = [
    "GROUP",
    "QUORUM",
    "TOPIC",
    "Binding",
    "Received",
    "binding_key",
    "delay_bucket",
    "group_bindings",
    "lease_queue",
    "members_exchange",
    "is_plain",
    "partition_key",
    "partitioned_exchange",
    "properties_of",
    "queue_name",
    "received",
]

QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
TOPIC = "tidings-topic"
"""On a delayed copy (whose routing key is its queue's name): the topic it was published to. On
a group's binding: the topic or pattern subscribed to."""
GROUP = "tidings-group"
"""On a group's binding: the group's name."""
DELIVERY_COUNT = "x-delivery-count"
_BROKER = frozenset(
    {
        TOPIC,
        DELIVERY_COUNT,
        # Set by RabbitMQ when a delayed copy is dead-lettered back to its queue.
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
"""Headers that belong to the broker or to tidings' delayed copies, not to the message."""

_MAX_NAME = 255
_PLAIN = re.compile(r"[a-zA-Z0-9_.:,/ -]*")
"""Name characters RabbitMQ clients accept, less ``+`` and ``#`` (standing for ``*`` and ``>``)
and ``@`` (which starts a digest)."""
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.:,/ +#-]")


def is_plain(name: str) -> bool:
    """Whether ``name`` is made only of characters every AMQP client accepts in a name."""
    return _PLAIN.fullmatch(name) is not None


def queue_name(exchange: str, group: str, topic: str, suffix: str = "") -> str:
    """``<exchange>:<group>:<topic><suffix>``, with ``+`` for ``*`` and ``#`` for ``>``. AMQP
    names allow few characters: a name with others, or too long, is cleaned and ends in
    ``@<digest>`` (of the whole name, ``suffix`` included)."""
    plain = f"{exchange}:{group}:{topic}"
    name = f"{exchange}:{group}:{topic.replace('*', '+').replace('>', '#')}{suffix}"
    if len(name) <= _MAX_NAME and is_plain(plain.replace("*", "").replace(">", "")):
        return name
    digest = hashlib.sha256((plain + suffix).encode()).hexdigest()[:16]
    return f"{_UNSAFE.sub('_', name)[: _MAX_NAME - 17]}@{digest}"


def binding_key(pattern: str) -> str:
    """The AMQP binding for a tidings topic pattern: ``a.>`` (one or more tokens) is ``a.*.#``."""
    if pattern.endswith(">"):
        return pattern[:-1] + "*.#"
    return pattern


def partitioned_exchange(exchange: str) -> str:
    """The topic exchange of keyed messages: ``<exchange>.partitioned``."""
    return f"{exchange}.partitioned"


def partition_key(partition: int, topic: str) -> str:
    """The routing key (or, for a pattern, the binding) of ``partition`` of ``topic`` on the
    :func:`partitioned_exchange`: ``<partition>.<topic>``."""
    return f"{partition}.{binding_key(topic)}"


@dataclass(frozen=True, slots=True)
class Binding:
    """A group's durable queue and how it is bound: to ``exchange`` with ``key``."""

    queue: str
    exchange: str
    key: str


def group_bindings(exchange: str, group: str, topic: str, partitions: int) -> list[Binding]:
    """The queues of ``group``'s subscription to ``topic``: the topic's, then each partition's."""
    keyed = partitioned_exchange(exchange)
    return [Binding(queue_name(exchange, group, topic), exchange, binding_key(topic))] + [
        Binding(queue_name(exchange, group, topic, partition_name("", n)), keyed,
                partition_key(n, topic))
        for n in range(partitions)
    ]  # fmt: skip


def lease_queue(exchange: str, group: str, topic: str, partition: int) -> str:
    """The exclusive queue whose declarer holds ``partition`` of ``group``'s subscription."""
    return queue_name(exchange, group, topic, partition_name("", partition) + ".lease")


def members_exchange(exchange: str, group: str, topic: str) -> str:
    """The fanout exchange on which the members of ``group``'s subscription meet."""
    return queue_name(exchange, group, topic, "#members")


def delay_bucket(delay: float) -> int:
    """The delay queue (its TTL bound in ms) for ``delay`` seconds: the next power of 2^(1/4)."""
    ms = max(1, math.ceil(delay * 1000))
    return math.ceil(2 ** (math.ceil(math.log2(ms) * 4 - 1e-9) / 4))


def properties_of(
    message: Message, *, retry: tuple[str, int] | None = None, expiration: str | None = None
) -> Basic.Properties:
    """AMQP properties for ``message``: id and type natively, the rest as headers; ``retry``
    is the (topic, attempt) of a delayed copy."""
    headers: dict[str, Any] = dict(message.headers) if message.headers else {}
    headers[TIME] = repr(message.timestamp)
    if message.key is not None:
        headers[KEY] = message.key
    if retry is not None:
        headers[TOPIC], attempt = retry
        headers[ATTEMPT] = str(attempt)
    return Basic.Properties(
        delivery_mode=2,
        message_id=message.id,
        message_type=message.type,
        headers=headers,
        expiration=expiration,
    )


class Received:
    """An AMQP delivery read as tidings sees it."""

    __slots__ = ("attempt", "message", "tag", "topic")

    def __init__(self, message: Message, attempt: int, topic: str, tag: int) -> None:
        self.message = message
        self.attempt = attempt
        self.topic = topic
        """The topic the message was published to (the subscription's may be a pattern)."""
        self.tag = tag


def received(delivered: DeliveredMessage, keyed: str) -> Received:
    """The message of an AMQP delivery, ours or another producer's: the envelope goes through
    :func:`~tidings.transports.kit.wire.from_wire`, so garbage in it falls back, never raises.
    A delivery through ``keyed`` (the :func:`partitioned_exchange`) has its partition before
    the topic in its routing key (:func:`partition_key`).

    The attempt adds the returns the quorum queue counted (``x-delivery-count``: a nack, or a
    consumer that went away holding it) to the attempt a delayed copy carries."""
    props = delivered.header.properties
    frame = cast(Basic.Deliver, delivered.delivery)
    headers: dict[str, Any] | None = props.headers
    topic = frame.routing_key or ""
    if frame.exchange == keyed:
        topic = topic.partition(".")[2]
    own = {k: v for k, v in headers.items() if k not in _BROKER} if headers else None
    message, attempt = from_wire(
        topic, delivered.body, own, kind=props.message_type, ident=props.message_id
    )
    if headers:
        copied = headers.get(TOPIC)  # a delayed copy, back from its queue
        if type(copied) is str and copied:
            topic = copied
        count = headers.get(DELIVERY_COUNT)  # requeued after a consumer went away
        if type(count) is int and count > 0:
            attempt += count
    return Received(message, attempt, topic, frame.delivery_tag or 0)
