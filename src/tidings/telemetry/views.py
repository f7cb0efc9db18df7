"""Histogram buckets for tidings' durations, as OpenTelemetry SDK views.

The SDK's default boundaries (0, 5, 10, 25 … 10000) suit milliseconds; tidings records seconds
(``messaging.process.duration``, ``tidings.message.latency``, …), where they would put nearly
every measurement in the first bucket. :data:`SECONDS_BUCKETS` spans what messaging takes, from
half a millisecond (a publish on the embedded store) to half a minute (a message waiting out a
retry delay). ``tidings run --http`` and ``--otlp`` use :func:`views` when they set up the meter
provider; an application that sets up its own passes them too::

    MeterProvider(metric_readers=[...], views=tidings.telemetry.views.views())

Needs the OpenTelemetry SDK (``pip install 'tidings[otel]'``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SECONDS_BUCKETS", "views"]

SECONDS_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Upper bounds, in seconds, of the buckets of every seconds-valued histogram of tidings."""


def views() -> list[Any]:
    """SDK views giving every histogram in seconds on tidings' meter :data:`SECONDS_BUCKETS`;
    other instruments, and other meters' histograms, keep their aggregation."""
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    return [
        View(
            instrument_type=Histogram,
            meter_name="tidings",
            instrument_unit="s",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=SECONDS_BUCKETS),
        )
    ]
