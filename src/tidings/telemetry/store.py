"""What an event store tells OpenTelemetry: database spans, metrics, and the trace context it keeps
with every event it appends.

Spans (when a tracer provider is set) follow the database conventions: ``db.system.name``
(``memory``, ``sqlite``, ``postgresql``), ``db.operation.name`` and, for a call on one stream,
the stream as ``db.collection.name``. A span is named after its operation alone: with a stream per
aggregate, names that held the stream would be unbounded.

=================  ========  ====================================================================
``append``         CLIENT    ``tidings.stream.expected_version``, ``tidings.event.count`` and the
                             new ``tidings.stream.version``; a conflict sets ``error.type``
                             (``ConcurrencyError``) and the error status
``read``           CLIENT    a stream read, from the first event asked for to the last one taken:
                             ``db.response.returned_rows``. Not made current, so what the reader
                             does between two events is not part of it
``load_snapshot``  CLIENT    ``tidings.stream.version`` of the snapshot found, if one was
``save_snapshot``  CLIENT    ``tidings.stream.version`` of the snapshot
``subscribe``      CLIENT    one page a catch-up subscription (``store.subscribe``) delivered:
                             ``db.response.returned_rows``, ``tidings.position.after``; linked to
                             the append of each event in it
``project <name>`` CONSUMER  one event handled by projection ``name``, a child of the span the
                             event was appended in: ``tidings.projection.name``,
                             ``tidings.event.type``, ``tidings.event.id``,
                             ``tidings.stream.version``, ``tidings.event.position``
=================  ========  ====================================================================

The append span's context is stored in each event's metadata (W3C ``traceparent`` and
``tracestate``, and what else the application's propagator writes), so whatever handles the
event later, in this process or another, continues the trace of the append: projections, the
outbox relay (its ``send`` spans: :meth:`SpanMaker.relay`) and the consumers of what it publishes.

Metrics (when a meter provider is set), by ``db.system.name``:

=================================  =========  =================================================
``db.client.operation.duration``   histogram  seconds one append or snapshot call took
                                              (``db.operation.name``; ``error.type`` if failed)
``tidings.eventstore.appended``    counter    events appended
=================================  =========  =================================================
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from tidings.telemetry.metrics import meter_configured, per_meter
from tidings.telemetry.providers import Telemetry
from tidings.telemetry.tracing import (
    SpanMaker,
    carried_contexts,
    errors_typed,
    record_failure,
    tracer_configured,
)
from tidings.topics import CACHE_SIZE

__all__ = ["Operation", "Recorded", "StoreInstruments", "StoreObserver", "store_configured"]

SYSTEM = "db.system.name"
OPERATION = "db.operation.name"
STREAM = "db.collection.name"
ROWS = "db.response.returned_rows"
VERSION = "tidings.stream.version"


class Recorded(Protocol):
    """What the spans show of a stored event."""

    @property
    def stream(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


R = TypeVar("R", bound=Recorded)


def store_configured(system: str, telemetry: Telemetry | None = None) -> StoreObserver | None:
    """An observer for an event store on database ``system`` if the application configured
    OpenTelemetry (a tracer or a meter provider); None otherwise (then nothing is observed, at
    no cost)."""
    telemetry = telemetry or Telemetry()
    tracer = tracer_configured(telemetry.tracer_provider)
    meter = meter_configured(telemetry.meter_provider)
    if tracer is None and meter is None:
        return None
    instruments = per_meter(meter, StoreInstruments) if meter is not None else _OFF
    return StoreObserver(system, tracer, instruments)


class Operation:
    """One observed store call: the trace context to store with what it writes (empty when not
    tracing), and what it found or left."""

    __slots__ = ("_span", "headers")

    def __init__(self, span: Any) -> None:
        self._span = span
        self.headers: dict[str, str] = {}

    def version(self, version: int) -> None:
        """The stream version the call left (append, snapshot saved) or found (snapshot
        loaded)."""
        self._span.set_attribute(VERSION, version)


class StoreObserver:
    """Spans and measurements for one event store on database ``system``."""

    __slots__ = (
        "_extract",
        "_get_current",
        "_inject",
        "_instruments",
        "_trace",
        "_tracer",
        "system",
    )

    def __init__(self, system: str, tracer: Any | None, instruments: StoreInstruments) -> None:
        from opentelemetry import context, propagate, trace

        self.system = system
        self._tracer = tracer
        self._instruments = instruments
        self._trace = trace
        self._inject = propagate.inject
        self._extract = propagate.extract
        self._get_current = context.get_current

    def messaging(self, system: str) -> SpanMaker | None:
        """Messaging spans for ``messaging.system`` ``system`` on this store's tracer (the outbox
        relay's); None when not tracing."""
        return SpanMaker(self._tracer, system) if self._tracer is not None else None

    @contextmanager
    def operation(
        self, name: str, stream: str, attributes: Mapping[str, Any] | None = None
    ) -> Iterator[Operation]:
        """Around one call ``name`` on ``stream``, in a span made current; its duration is
        measured."""
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            if self._tracer is None:
                yield Operation(self._trace.INVALID_SPAN)
            else:
                with (
                    self._tracer.start_as_current_span(
                        name,
                        kind=self._trace.SpanKind.CLIENT,
                        attributes={**self._where(name), STREAM: stream, **(attributes or {})},
                    ) as span,
                    errors_typed(span),
                ):
                    yield Operation(span)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._instruments.operation(self.system, name, time.perf_counter() - started, error)

    @contextmanager
    def appending(
        self, stream: str, expected_version: int | str, count: int
    ) -> Iterator[Operation]:
        """Around one append of ``count`` events; its ``headers`` hold the append span's trace
        context, for the events' metadata."""
        attributes = {
            "tidings.stream.expected_version": str(expected_version),
            "tidings.event.count": count,
        }
        with self.operation("append", stream, attributes) as operation:
            if self._tracer is not None:
                self._inject(operation.headers)
            yield operation
        self._instruments.appended(self.system, count)

    def reading(self, stream: str, events: AsyncIterator[R]) -> AsyncIterator[R]:
        """``events`` of ``stream``, read within a ``read`` span (``events`` itself when not
        tracing)."""
        if self._tracer is None:
            return events
        return self._read(self._tracer, stream, events)

    async def _read(self, tracer: Any, stream: str, events: AsyncIterator[R]) -> AsyncIterator[R]:
        # Started at the first event asked for, in the reader's context; never made current,
        # because a context set in an async generator would leak into the reader's code between
        # two events (and could not be reset if the reader stops iterating in another task).
        span = tracer.start_span(
            "read",
            kind=self._trace.SpanKind.CLIENT,
            attributes={**self._where("read"), STREAM: stream},
            record_exception=False,
            set_status_on_exception=False,
        )
        rows = 0
        try:
            async for event in events:
                rows += 1
                yield event
        except Exception as exc:  # not GeneratorExit: a reader that stops early did not fail
            record_failure(span, exc)
            raise
        finally:
            span.set_attribute(ROWS, rows)
            span.end()

    def delivered(self, after: int, started_ns: int, page: Sequence[Recorded]) -> None:
        """Record a page of a catch-up subscription, read from ``started_ns`` (ns since the
        epoch) until now, as a ``subscribe`` span linked to each event's append."""
        if self._tracer is None or not page:
            return
        carried = carried_contexts(event.metadata for event in page).values()
        links = [self._trace.Link(context) for _, context in carried]
        attributes = {**self._where("subscribe"), ROWS: len(page), "tidings.position.after": after}
        self._tracer.start_span(
            "subscribe",
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            links=links,
            start_time=started_ns,
        ).end()

    @contextmanager
    def projecting(self, projection: str, recorded: Recorded) -> Iterator[None]:
        """Around one event's handler in ``projection``: a span in the trace the event was
        appended in (or, for an event stored without one, in the current trace)."""
        if self._tracer is None:
            yield
            return
        parent = self._extract(recorded.metadata, context=self._get_current())
        attributes = {
            SYSTEM: self.system,
            STREAM: recorded.stream,
            "tidings.projection.name": projection,
            "tidings.event.type": recorded.type,
            "tidings.event.id": recorded.id,
            VERSION: recorded.version,
            "tidings.event.position": recorded.position,
        }
        with (
            self._tracer.start_as_current_span(
                f"project {projection}",
                context=parent,
                kind=self._trace.SpanKind.CONSUMER,
                attributes=attributes,
            ) as span,
            errors_typed(span),
        ):
            yield

    def _where(self, operation: str) -> dict[str, str]:
        return {SYSTEM: self.system, OPERATION: operation}


class StoreInstruments:
    """An event store's instruments on one meter; every method does nothing without a meter."""

    def __init__(self, meter: Any | None) -> None:
        self._on = meter is not None
        if meter is None:
            return
        self._duration = meter.create_histogram(
            "db.client.operation.duration", unit="s", description="Event store call duration"
        )
        self._appended = meter.create_counter(
            "tidings.eventstore.appended", unit="{event}", description="Events appended"
        )

    def operation(
        self, system: str, name: str, duration: float, error: BaseException | None
    ) -> None:
        if self._on:
            failed = type(error).__qualname__ if error is not None else None
            self._duration.record(duration, _where(system, name, failed))

    def appended(self, system: str, count: int) -> None:
        if self._on:
            self._appended.add(count, _where(system))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _where(system: str, operation: str | None = None, error: str | None = None) -> dict[str, str]:
    """A measurement's attributes, made once per distinct set (the SDK only reads them)."""
    attributes = {SYSTEM: system}
    if operation is not None:
        attributes[OPERATION] = operation
    if error is not None:
        attributes["error.type"] = error
    return attributes


_OFF = StoreInstruments(None)
