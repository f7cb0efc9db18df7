"""What tracing and metrics cost: the B1, B2, B3 and B6 (NATS JetStream) workloads with
telemetry off, with a no-op provider, with the SDK and nothing exported, and with the SDK
exporting in batches.

* off: no provider set (the default): a bus pays one attribute check per publish and message;
* no-op: OpenTelemetry's NoOpTracerProvider and NoOpMeterProvider, which tidings treats as off;
* SDK: a TracerProvider and a MeterProvider with no processor or reader (spans are made, then
  dropped);
* SDK + batch export: a BatchSpanProcessor to an exporter that discards, and an in-memory
  metric reader: what an application exporting to a collector pays in process.

Run: ``python -m bench.telemetry_cost [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tidings
from bench.common import Row, best_of, best_of_async, print_table
from tidings.telemetry import Telemetry


@tidings.event("bench.telemetry.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    n: int


def _off() -> Telemetry | None:
    return None


def _noop() -> Telemetry:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    return Telemetry(NoOpTracerProvider(), NoOpMeterProvider())


def _sdk() -> Telemetry:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    return Telemetry(TracerProvider(), MeterProvider())


def _exported() -> Telemetry:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    return Telemetry(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))


SETTINGS: list[tuple[str, Callable[[], Telemetry | None]]] = [
    ("off", _off),
    ("no-op provider", _noop),
    ("SDK, nothing exported", _sdk),
    ("SDK, batch export", _exported),
]


def b1_emit(telemetry: Telemetry | None, n: int) -> int:
    """B1: emit to three plain handlers."""
    seen = [0]
    bus = tidings.Bus(telemetry=telemetry)
    for name in "abc":
        bus.subscribe(Ping, lambda event: seen.__setitem__(0, seen[0] + 1), name=name)
    event = Ping(1)
    for _ in range(n):
        bus.emit(event)
    assert seen[0] == 3 * n
    return n


async def b2_publish_and_wait(telemetry: Telemetry | None, n: int) -> int:
    """B2: publish_and_wait to three async handlers."""
    seen = [0]

    async def handler(event: Any) -> None:
        seen[0] += 1

    bus = tidings.Bus(telemetry=telemetry)
    for name in "abc":
        bus.subscribe(Ping, handler, name=name)
    event = Ping(1)
    for _ in range(n):
        await bus.publish_and_wait(event)
    assert seen[0] == 3 * n
    return n


class _Countdown:
    """A handler that sets ``done`` once it saw ``n`` events."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = asyncio.Event()

    async def handler(self, event: Any) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


async def b3_queued(telemetry: Telemetry | None, n: int) -> int:
    """B3: publish to a bounded channel, four workers handle."""
    handled = _Countdown(n)
    bus = tidings.Bus(capacity=1024, telemetry=telemetry)
    bus.subscribe(Ping, handled.handler, concurrency=4)
    event = Ping(1)
    async with bus:
        for _ in range(n):
            await bus.publish(event)
        await handled.done.wait()
    return n


async def b6_nats(telemetry: Telemetry | None, n: int) -> int:
    """B6 on NATS JetStream: publish_many in batches of 1,000, one handler, end to end."""
    from bench.b6_nats import URL, delete_streams, names

    handled = _Countdown(n)
    stream, prefix = names("tc")
    bus = tidings.Bus(f"{URL}?stream={stream}&prefix={prefix}", telemetry=telemetry)
    bus.subscribe(Ping, handled.handler, concurrency=500)
    try:
        async with bus:
            for start in range(0, n, 1000):
                await bus.publish_many(Ping(k) for k in range(start, min(start + 1000, n)))
            await handled.done.wait()
    finally:
        await delete_streams(stream, f"{stream}_DLQ")
    return n


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else 50_000
    results: list[dict[str, object]] = []
    workloads: list[tuple[str, Callable[[Telemetry | None], tuple[int, float]]]] = [
        ("B1 emit, 3 handlers", lambda t: best_of(lambda: b1_emit(t, n))),
        (
            "B2 publish_and_wait, 3 async handlers",
            lambda t: best_of_async(lambda: b2_publish_and_wait(t, n)),
        ),
        ("B3 publish, 4 workers", lambda t: best_of_async(lambda: b3_queued(t, n))),
        (
            "B6 NATS JetStream, publish_many end to end",
            lambda t: best_of_async(lambda: b6_nats(t, n // 5)),
        ),
    ]
    for title, run in workloads:
        rows = [Row(name, *run(make())) for name, make in SETTINGS]
        results += print_table(f"Telemetry cost: {title}", rows, "off", args.json)
    return results


if __name__ == "__main__":
    main()
