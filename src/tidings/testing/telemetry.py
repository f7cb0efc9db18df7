"""Spans and metrics captured in memory, for tests of what a bus reports to OpenTelemetry.

``Captured()`` holds an SDK tracer provider with an in-memory exporter and a meter provider with
an in-memory reader; give ``captured.telemetry`` to ``Bus(telemetry=…)``. It needs the
OpenTelemetry SDK (``pip install 'tidings[otel]'``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tidings.telemetry import Telemetry

__all__ = ["Captured"]


class Captured:
    """Finished spans and collected metrics of the buses given :attr:`telemetry`."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self._exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        self._reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self._reader])
        self.telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def spans(self, name_prefix: str = "") -> list[Any]:
        """Finished spans, oldest first, whose names start with ``name_prefix``."""
        return [s for s in self._exporter.get_finished_spans() if s.name.startswith(name_prefix)]

    def metric(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Every data point of metric ``name``: (attributes, value) — a sum's value, a gauge's
        value, or a histogram's count."""
        data = self._reader.get_metrics_data()
        points: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = getattr(point, "count", None)
                        points.append((dict(point.attributes or {}), value))
        return points

    def total(self, name: str, **attributes: str) -> Any:
        """The sum of metric ``name`` over points whose attributes include ``attributes``
        (attribute names with dots written with ``__``: ``tidings__outcome="ok"``)."""
        wanted = {key.replace("__", "."): value for key, value in attributes.items()}
        return sum(
            value
            for found, value in self.metric(name)
            if all(found.get(k) == v for k, v in wanted.items())
        )

    def outcomes(self, group: str | None = None) -> Counter[str]:
        """Messages consumed by outcome (``ok``, ``retried``, ``dead_lettered``…)."""
        counts: Counter[str] = Counter()
        for found, value in self.metric("messaging.client.consumed.messages"):
            if group is None or found.get("messaging.consumer.group.name") == group:
                counts[found["tidings.outcome"]] += value
        return counts
