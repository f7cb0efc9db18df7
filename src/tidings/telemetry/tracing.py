"""Messaging spans: ``send`` (PRODUCER) and ``process`` (CONSUMER), linked by W3C headers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tidings.message import CORRELATION_ID, Message
from tidings.telemetry.providers import provider_in_use

__all__ = [
    "SpanMaker",
    "carried_contexts",
    "errors_typed",
    "record_failure",
    "tracer_configured",
]

ATTEMPT = "tidings.message.attempt"


def tracer_configured(provider: Any = None) -> Any | None:
    """tidings' tracer on ``provider``, or on the global one if the application set it."""
    provider = provider_in_use(provider, "opentelemetry.trace", "get_tracer_provider")
    if provider is None:
        return None
    return provider.get_tracer("tidings")


def carried_contexts(carriers: Iterable[Mapping[str, str]]) -> dict[int, tuple[Any, Any]]:
    """The distinct trace contexts that W3C ``carriers`` (headers, stored metadata) hold, by
    span id: each as a context to start a child span in, and as a span context to link to."""
    from opentelemetry import propagate, trace

    found: dict[int, tuple[Any, Any]] = {}
    for carrier in carriers:
        context = propagate.extract(carrier)
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            found.setdefault(span_context.span_id, (context, span_context))
    return found


@contextmanager
def errors_typed(span: Any) -> Iterator[None]:
    """Set ``error.type`` on ``span`` when the block raises (the SDK's span records the exception
    and the status itself)."""
    try:
        yield
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__qualname__)
        raise


def record_failure(span: Any, error: BaseException) -> None:
    """Mark ``span`` as failed with ``error``: ``error.type``, the exception event, the status."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", type(error).__qualname__)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"))


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
        with self._producing(topic, messages):
            carrier: dict[str, str] = {}
            self._inject(carrier)
            yield [m.with_headers(carrier) for m in messages] if carrier else list(messages)

    @contextmanager
    def relay(self, topic: str, messages: Sequence[Message]) -> Iterator[None]:
        """A ``send`` span around publishing stored ``messages`` (the outbox relay's). They keep
        the trace context they were stored with, so each consumer's ``process`` span continues
        the trace of the append; this span is a child of that context when the messages share
        one (one append's events), else it links to each."""
        stored = carried_contexts(m.headers for m in messages)
        if len(stored) == 1:
            ((parent, _),) = stored.values()
            with self._producing(topic, messages, parent=parent):
                yield
        else:
            links = [self._trace.Link(c) for _, c in stored.values()]
            with self._producing(topic, messages, links=links):
                yield

    @contextmanager
    def _producing(
        self, topic: str, messages: Sequence[Message], parent: Any = None, links: Any = None
    ) -> Iterator[None]:
        with (
            self._tracer.start_as_current_span(
                f"send {topic}",
                context=parent,
                kind=self._trace.SpanKind.PRODUCER,
                attributes=self._attributes(topic, "send", "publish", messages),
                links=links,
            ) as span,
            errors_typed(span),
        ):
            yield

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
            carried = carried_contexts(m.headers for m in messages).values()
            links = [self._trace.Link(c) for _, c in carried]
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
        record_failure(span, error)
        if dead_lettered:
            reason = f"{type(error).__qualname__}: {error}"
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
