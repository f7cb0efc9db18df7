"""CloudEvents in binary mode: messages that CloudEvents consumers understand as they are.

``Bus(url, cloudevents=CloudEvents(source="/orders"))`` adds the required attributes to every
message it publishes, as headers beside tidings' own: ``ce-specversion`` (1.0), ``ce-id`` (the
message id), ``ce-type`` (the event name), ``ce-source``, ``ce-time`` (RFC 3339) and
``content-type``. On Kafka they are named as its protocol binding says (``ce_id``, …); elsewhere
``ce-id``, … (HTTP's names, which NATS, RabbitMQ and Redis consumers commonly read). The payload
stays the event's JSON: in binary mode the data is the message body.

Reading needs nothing: every transport takes the id, type and time of a message from a
CloudEvents producer that carries no tidings headers (:mod:`tidings.transports.kit.wire`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tidings.codec import Registry
from tidings.envelopes import Envelopes
from tidings.message import Message

__all__ = ["CloudEvents", "CloudEventsEnvelopes", "SPEC_VERSION"]

SPEC_VERSION = "1.0"
_PREFIXES = {"kafka": "ce_"}
"""``messaging.system`` → the binding's attribute prefix where it is not ``ce-``."""


@dataclass(frozen=True, slots=True)
class CloudEvents:
    """What a bus writes as CloudEvents attributes."""

    source: str
    """``ce-source``: a URI reference naming the producer (``/orders``, ``urn:shop:orders``)."""
    content_type: str = "application/json"
    """``content-type`` of the body: JSON, as tidings' codec writes it."""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("CloudEvents need a source: CloudEvents(source='/my-service')")


class CloudEventsEnvelopes(Envelopes):
    """Envelopes that carry the CloudEvents attributes too."""

    __slots__ = ("_content_type", "_prefix", "_source")

    def __init__(self, registry: Registry, settings: CloudEvents, system: str) -> None:
        super().__init__(registry)
        self._prefix = _PREFIXES.get(system, "ce-")
        self._source = settings.source
        self._content_type = settings.content_type

    def make(
        self, event: Any, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Message:
        message = super().make(event, key, headers)
        prefix = self._prefix
        return message.with_headers(
            {
                f"{prefix}specversion": SPEC_VERSION,
                f"{prefix}id": message.id,
                f"{prefix}type": message.type,
                f"{prefix}source": self._source,
                f"{prefix}time": _rfc3339(message.timestamp),
                "content-type": self._content_type,
            }
        )


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
