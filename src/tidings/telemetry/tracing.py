"""Messaging spans: ``send`` (PRODUCER) and ``process`` (CONSUMER), linked by W3C headers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tidings.message import CORRELATION_ID, Message
from tidings.telemetry.providers import provider_in_use

__all__ = ["SpanMaker", "tracer_configured"]

ATTEMPT = "tidings.message.attempt"


def tracer_configured(provider: Any = None) -> Any | None:
    """tidings' tracer on ``provider``, or on the global one if the application set it."""
    provider = provider_in_use(provider, "opentelemetry.trace", "get_tracer_provider")
    if provider is None:
        return None
    return provider.get_tracer("tidings")


class SpanMaker:
    """Starts tidings' spans on one tracer, for one ``messaging.system``."""

    def __init__(self, tracer: Any, system: str) -> None:
        from opentelemetry import propagate, trace

        self._tracer = tracer
        self._system = system
        self._trace = trace
        self._inject = propagate.inject
        self._extract = propagate.extract

    @contextmanager
    def send(self, topic: str, messages: Sequence[Message]) -> Iterator[list[Message]]:
        attributes = self._attributes(topic, "send", "publish", messages)
        with self._tracer.start_as_current_span(
            f"send {topic}", kind=self._trace.SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            self._inject(carrier)
            try:
                yield [m.with_headers(carrier) for m in messages] if carrier else list(messages)
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise

    @contextmanager
    def process(
        self,
        topic: str,
        group: str,
        messages: Sequence[Message],
        attempt: int,
        partition: Any = None,
    ) -> Iterator[None]:
        attributes = self._attributes(topic, "process", "process", messages)
        attributes["messaging.consumer.group.name"] = group
        attributes[ATTEMPT] = attempt
        if partition is not None:
            attributes["messaging.destination.partition.id"] = str(partition)
        parent, links = None, None
        if len(messages) == 1:
            parent = self._extract(messages[0].headers)
        else:  # a batch: one span, linked to each message's producer
            get_span = self._trace.get_current_span
            contexts = [get_span(self._extract(m.headers)).get_span_context() for m in messages]
            links = [self._trace.Link(c) for c in contexts if c.is_valid]
        with self._tracer.start_as_current_span(
            f"process {topic}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ):
            yield

    def failed(self, error: BaseException, *, dead_lettered: bool) -> None:
        """Record on the current span that its handler call failed, and whether that was the
        end of the message (dead-lettered)."""
        span = self._trace.get_current_span()
        reason = f"{type(error).__qualname__}: {error}"
        span.set_attribute("error.type", type(error).__qualname__)
        span.record_exception(error)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, reason))
        if dead_lettered:
            span.add_event("dead_lettered", {"tidings.dead_letter.reason": reason})

    def _attributes(
        self, topic: str, operation: str, name: str, messages: Sequence[Message]
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "messaging.system": self._system,
            "messaging.destination.name": topic,
            "messaging.operation.type": operation,
            "messaging.operation.name": name,
        }
        if len(messages) != 1:
            attributes["messaging.batch.message_count"] = len(messages)
            return attributes
        message = messages[0]
        attributes["messaging.message.id"] = message.id
        attributes["messaging.message.conversation_id"] = (
            message.headers.get(CORRELATION_ID) or message.id
        )
        if message.key is not None:
            attributes["tidings.message.key"] = message.key
            if self._system == "kafka":
                attributes["messaging.kafka.message.key"] = message.key
        return attributes
