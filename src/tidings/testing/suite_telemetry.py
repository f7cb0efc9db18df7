"""Suite cases: a trace crosses the transport, and retries and dead letters show in it.

They need the OpenTelemetry SDK (the ``otel`` extra) and are skipped without it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tidings.middleware.retry import Retry
from tidings.testing.receiver import TransportFactory, unique
from tidings.testing.suite_bus import BusCases, SuiteEvent, _Handled
from tidings.testing.telemetry import Captured

__all__ = ["TelemetryCases"]


def _captured() -> Captured:
    try:
        return Captured()
    except ImportError:
        pytest.skip("the OpenTelemetry SDK is not installed")


class TelemetryCases(BusCases):
    async def test_a_trace_crosses_the_transport(self, transport_factory: TransportFactory) -> None:
        """Published inside a span, handled in the same trace: the producer's ``send`` span is
        the parent of the consumer's ``process`` span, with the messaging attributes."""
        captured = _captured()
        topic, handled, group = unique("suite.traced"), _Handled(), unique("group")
        done: list[int] = []

        async def handle(value: object) -> None:
            n = handled.saw(value)
            if n is not None:
                done.append(n)

        tracer = captured.telemetry.tracer_provider.get_tracer("suite")
        async with self.running(
            transport_factory, topic, handled, captured.telemetry, handler=handle, group=group
        ) as (bus, _):
            with tracer.start_as_current_span("request") as request:
                sent = await bus.publish(SuiteEvent(1), topic=topic, key="k1")
            await handled.until(lambda: done == [1], "the traced event handled", self.timeout)
        process = _only(captured, "process ", sent.id)
        send = _only(captured, "send ", sent.id)
        assert process.context.trace_id == request.get_span_context().trace_id
        assert process.parent.span_id == send.context.span_id
        assert process.attributes["messaging.destination.name"] == topic
        assert process.attributes["messaging.consumer.group.name"] == group
        assert process.attributes["messaging.system"] == send.attributes["messaging.system"]
        assert process.attributes["tidings.message.attempt"] == 1

    async def test_retries_and_the_dead_letter_show_in_the_trace(
        self, transport_factory: TransportFactory
    ) -> None:
        """A message failing three times: three ``process`` spans with attempts 1, 2, 3, the
        last one with the ``dead_lettered`` event; the outcome counters agree."""
        captured = _captured()
        topic, handled, group = unique("suite.traced_dlq"), _Handled(), unique("group")

        async def handle(value: object) -> None:
            if handled.saw(value) is not None:
                raise ValueError("always")

        retry = Retry(max_attempts=3, initial_delay=0.01, jitter=False)
        async with self.running(
            transport_factory,
            topic,
            handled,
            captured.telemetry,
            handler=handle,
            retry=retry,
            group=group,
        ) as (bus, letters):
            sent = await bus.publish(SuiteEvent(2), topic=topic)
            await letters.until(1)
        spans = [s for s in captured.spans("process ") if _id(s) == sent.id]
        assert sorted(s.attributes["tidings.message.attempt"] for s in spans) == [1, 2, 3]
        last = max(spans, key=lambda s: s.attributes["tidings.message.attempt"])
        assert any(event.name == "dead_lettered" for event in last.events)
        outcomes = captured.outcomes(group)
        assert (outcomes["retried"], outcomes["dead_lettered"]) == (2, 1)


def _id(span: Any) -> Any:
    return span.attributes.get("messaging.message.id")


def _only(captured: Captured, prefix: str, message_id: str) -> Any:
    (span,) = [s for s in captured.spans(prefix) if _id(s) == message_id]
    return span
