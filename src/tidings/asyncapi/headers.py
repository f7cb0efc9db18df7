"""The schema of the headers every tidings message carries."""

from __future__ import annotations

from typing import Any

from tidings.message import CAUSATION_ID, CORRELATION_ID
from tidings.transports.kit.wire import ATTEMPT, ID, KEY, TIME, TYPE

__all__ = ["CORRELATION", "HEADERS", "NAME"]

NAME = "tidings-headers"
"""The headers' component name (no event class can take it: class names hold no ``-``)."""

_HEADERS = {
    ID: "The message id: a time-ordered UUID, the same on every delivery (deduplicate by it).",
    TYPE: "The event name (the message's name in this document).",
    TIME: "When the message was made: seconds since the Unix epoch, a decimal number.",
    KEY: "The ordering key: messages with one key are handled in order where asked.",
    ATTEMPT: "The delivery attempt, from 1, where the broker does not count deliveries.",
    CORRELATION_ID: "The id of the first message of the conversation this one belongs to.",
    CAUSATION_ID: "The id of the message whose handler published this one.",
    "traceparent": "W3C trace context of the publishing span, when tracing is on.",
    "tracestate": "W3C trace state, when tracing is on.",
    "baggage": "W3C baggage, when tracing is on.",
}

HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The envelope and the application's own headers, all strings. NATS and Kafka "
    "carry them as message headers; RabbitMQ carries the id and the event name as the AMQP "
    "message_id and type properties; the SQL and Redis transports keep the envelope in columns "
    "and stream fields (id, type, time, key) and the application's headers as one JSON object.",
    "properties": {
        name: {"type": "string", "description": text} for name, text in _HEADERS.items()
    },
    "additionalProperties": {"type": "string"},
}

CORRELATION: dict[str, Any] = {
    "description": "Messages published while one is handled carry its correlation id.",
    "location": f"$message.header#/{CORRELATION_ID}",
}
