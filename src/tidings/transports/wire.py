"""How a Message travels through brokers: payload bytes plus string headers.

Brokers with native headers (NATS, Kafka, AMQP, Redis stream fields) carry the envelope in these
headers; the user's headers travel beside them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from tidings.message import Message

__all__ = ["ATTEMPT", "ID", "KEY", "TIME", "TYPE", "from_wire", "to_wire"]

ID = "tidings-id"
TYPE = "tidings-type"
TIME = "tidings-time"
KEY = "tidings-key"
ATTEMPT = "tidings-attempt"
"""Set by transports that redeliver by publishing again (Kafka, RabbitMQ): the next attempt."""

_ENVELOPE = frozenset({ID, TYPE, TIME, KEY, ATTEMPT})


def to_wire(message: Message) -> dict[str, str]:
    """The headers that carry ``message``'s envelope and its own headers."""
    headers = dict(message.headers)
    headers[ID] = message.id
    headers[TYPE] = message.type
    headers[TIME] = repr(message.timestamp)
    if message.key is not None:
        headers[KEY] = message.key
    return headers


def from_wire(topic: str, data: bytes, headers: Mapping[str, str]) -> Message:
    """The message that :func:`to_wire` described. Missing envelope headers fall back to the
    topic as type and a fresh id, so messages from non-tidings producers are still delivered."""
    user = {k: v for k, v in headers.items() if k not in _ENVELOPE}
    time = headers.get(TIME)
    return Message.restore(
        headers.get(TYPE, topic),
        data,
        user,
        headers.get(KEY),
        headers.get(ID),
        float(time) if time else None,
    )
