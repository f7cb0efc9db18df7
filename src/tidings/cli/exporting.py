"""The OpenTelemetry providers ``tidings run`` sets up for ``--http`` (``/metrics``) and OTLP.

tidings itself only uses the OpenTelemetry API (:mod:`tidings.telemetry`): whoever runs the
application chooses the SDK and its exporters. The worker is such a runner. It sets up, as the
global providers, only what the application did not set up itself (the application's providers
win, and are never replaced):

* with ``--http``: a MeterProvider with a ``PrometheusMetricReader``, which ``/metrics`` serves
  through ``prometheus_client``'s default registry;
* with ``--otlp URL``, or when one of the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``,
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` variables is
  set: a TracerProvider exporting spans and the MeterProvider exporting metrics with the SDK's
  OTLP/HTTP exporters, which read the other ``OTEL_*`` variables themselves (headers, timeout,
  ``OTEL_METRIC_EXPORT_INTERVAL``; ``OTEL_SERVICE_NAME`` names the service).

Histograms get :data:`tidings.telemetry.views.SECONDS_BUCKETS`. :meth:`Exporting.shut_down`
flushes what is still buffered; the worker calls it once the bus is closed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import typer

from tidings.telemetry.providers import provider_in_use
from tidings.telemetry.views import views

__all__ = ["OTLP_VARIABLES", "Exporting", "set_up"]

OTLP_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
"""Any of these set (and not empty) turns OTLP export on, as ``--otlp`` does."""

_log = logging.getLogger("tidings.worker")


@dataclass
class Exporting:
    """The providers :func:`set_up` made, to shut down when the worker stops."""

    made: list[Any] = field(default_factory=list)

    def shut_down(self) -> None:
        """Export what is buffered and stop the providers made here. Idempotent."""
        made, self.made = self.made, []
        for provider in made:
            provider.shutdown()


def set_up(*, prometheus: bool, otlp: str | None) -> Exporting:
    """Set up the global providers ``--http`` (``prometheus``) and ``--otlp`` ask for, where
    the application did not set its own (a log record says so when it did).

    ``otlp`` is the collector's base URL (``http://127.0.0.1:4318``); None leaves the endpoint
    to the ``OTEL_*`` variables, and OTLP off unless one of :data:`OTLP_VARIABLES` is set. Raises
    typer.BadParameter when a package it needs is not installed.
    """
    exporting = Exporting()
    wants_otlp = otlp is not None or any(os.environ.get(v) for v in OTLP_VARIABLES)
    if not prometheus and not wants_otlp:
        return exporting
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError:
        option = "--http" if prometheus else "--otlp"
        raise _missing("http" if prometheus else "otel", option) from None
    if provider_in_use(None, "opentelemetry.metrics", "get_meter_provider") is None:
        readers = [_prometheus_reader()] if prometheus else []
        if wants_otlp:
            readers.append(_otlp_metric_reader(otlp))
        meter_provider = MeterProvider(metric_readers=readers, views=views())
        metrics.set_meter_provider(meter_provider)
        exporting.made.append(meter_provider)
    else:
        _log.warning(
            "the application set its own MeterProvider: tidings' metrics go where its readers "
            "send them (/metrics serves them if it has a PrometheusMetricReader)"
        )
    if not wants_otlp:
        return exporting
    if provider_in_use(None, "opentelemetry.trace", "get_tracer_provider") is None:
        tracer_provider = _otlp_tracer_provider(otlp)
        trace.set_tracer_provider(tracer_provider)
        exporting.made.append(tracer_provider)
    else:
        _log.warning("the application set its own TracerProvider: spans go where it sends them")
    return exporting


def _prometheus_reader() -> Any:
    try:
        import prometheus_client  # noqa: F401  (what /metrics serves the registry with)
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
    except ImportError:
        raise _missing("http", "--http") from None
    return PrometheusMetricReader()


def _otlp_metric_reader(base: str | None) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    except ImportError:
        raise _missing("otel", "--otlp") from None
    endpoint = None if base is None else f"{base.rstrip('/')}/v1/metrics"
    return PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint))


def _otlp_tracer_provider(base: str | None) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise _missing("otel", "--otlp") from None

    endpoint = None if base is None else f"{base.rstrip('/')}/v1/traces"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def _missing(extra: str, option: str) -> typer.BadParameter:
    return typer.BadParameter(
        f"needs the OpenTelemetry SDK and exporters: pip install 'tidings[{extra}]'",
        param_hint=option,
    )
