"""Traces and metrics through OpenTelemetry, with nothing to configure in tidings.

When the application has set a tracer provider (the SDK's, with its exporters), publishing and
handling produce spans that follow the OpenTelemetry messaging conventions, connected across
processes by the W3C ``traceparent``/``tracestate`` (and ``baggage``) headers every transport
carries. When it has set a meter provider, tidings records its metrics (:mod:`.metrics`).
Without either, or without ``opentelemetry-api`` installed, a bus pays one attribute check per
publish and per handled message: :func:`configured` returns None and nothing else runs.

``Bus(telemetry=Telemetry(tracer_provider=…, meter_provider=…))`` uses the providers given
instead of the global ones (an application with several, or a test). A bus looks when it starts
(and at its first ``publish_and_wait`` or ``emit`` if it never starts), so a provider set up in
``main()`` after a module-level ``Bus()`` is seen.
"""

from __future__ import annotations

from tidings.telemetry.observer import Observer, configured
from tidings.telemetry.providers import Telemetry
from tidings.telemetry.systems import system_of

__all__ = ["Observer", "Telemetry", "configured", "system_of"]
