"""What the bus and the consume loop tell OpenTelemetry: one :class:`Observer` per bus.

Spans (when a tracer provider is set), after the messaging conventions:

* ``send <topic>`` (PRODUCER) around ``publish``, ``publish_many`` (with the batch's count),
  ``publish_nowait``, ``publish_and_wait`` and ``emit``; its context goes into each message's
  headers (W3C ``traceparent``, ``tracestate``, ``baggage``);
* ``process <topic>`` (CONSUMER) around each handler call, a child of the producer's context
  taken from the headers; one per attempt (``tidings.message.attempt``), so a message retried
  twice shows three; a failure sets ``error.type`` and the status; dead-lettering is an event
  ``dead_lettered`` with the reason; a batch handler's span links every message's context.

Metrics (when a meter provider is set): see :mod:`tidings.telemetry.metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tidings.errors import DecodeError, MessageTooLarge
from tidings.health import Health
from tidings.message import Message
from tidings.telemetry.metrics import Instruments, Reading, instruments_for, meter_configured
from tidings.telemetry.providers import Telemetry
from tidings.telemetry.tracing import SpanMaker, tracer_configured
from tidings.transports.base import Groups

__all__ = ["Observer", "configured", "final_outcome"]

LAG_EVERY = 15.0
"""Seconds between two readings of the groups' lag (a broker round trip each)."""

_log = logging.getLogger("tidings.telemetry")


def configured(system: str, telemetry: Telemetry | None = None) -> Observer | None:
    """An observer for a bus on ``system`` if the application configured OpenTelemetry (a
    tracer or a meter provider); None otherwise (then nothing is observed, at no cost)."""
    telemetry = telemetry or Telemetry()
    tracer = tracer_configured(telemetry.tracer_provider)
    meter = meter_configured(telemetry.meter_provider)
    if tracer is None and meter is None:
        return None
    spans = SpanMaker(tracer, system) if tracer is not None else None
    return Observer(system, spans, instruments_for(meter))


class Observer:
    """Spans and measurements for one bus."""

    __slots__ = ("__weakref__", "_health", "_instruments", "_lag", "_lag_task", "_spans", "system")

    def __init__(self, system: str, spans: SpanMaker | None, instruments: Instruments) -> None:
        self.system = system
        self._spans = spans
        self._instruments = instruments
        self._health: Callable[[], Health] | None = None
        self._lag: Reading = []
        self._lag_task: asyncio.Task[None] | None = None

    # -- gauges ------------------------------------------------------------------------------

    def watch(self, health: Callable[[], Health], transport: object) -> None:
        """Report the bus's consumers (from ``health``) in the gauges, and, where the transport
        keeps groups, each group's lag, read every :data:`LAG_EVERY` seconds."""
        self._health = health
        self._instruments.watch(self.readings)
        if not self._instruments.on or not isinstance(transport, Groups):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # emit outside an event loop: no lag, the rest still works
            return
        self._lag_task = loop.create_task(self._follow_lag(transport))

    def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()

    def readings(self) -> tuple[Reading, Reading, Reading]:
        in_flight: Reading = []
        up: Reading = []
        if self._health is not None:
            for route in self._health().routes:
                where = {
                    "messaging.system": self.system,
                    "messaging.destination.name": route.topic,
                    "messaging.consumer.group.name": route.group,
                }
                in_flight.append((route.in_flight, where))
                up.append((1.0 if route.state == "running" else 0.0, where))
        return in_flight, up, self._lag

    async def _follow_lag(self, transport: Groups) -> None:
        while True:
            try:
                self._lag = [
                    (
                        info.lag,
                        {
                            "messaging.system": self.system,
                            "messaging.destination.name": info.topic,
                            "messaging.consumer.group.name": info.group,
                        },
                    )
                    for info in await transport.groups()
                ]
            except Exception as exc:  # the broker is away: keep the last reading, try again
                _log.debug("could not read the groups' lag: %r", exc)
            await asyncio.sleep(LAG_EVERY)  # a polling interval, not synchronisation

    # -- publishing ---------------------------------------------------------------------------

    @contextmanager
    def sending(self, topic: str, messages: Sequence[Message]) -> Iterator[list[Message]]:
        """Around one publish of ``messages`` to ``topic``: yields them with the trace context
        in their headers (unchanged when not tracing)."""
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            if self._spans is None:
                yield list(messages)
            else:
                with self._spans.send(topic, messages) as carried:
                    yield carried
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._instruments.sent(
                self.system, topic, len(messages), time.perf_counter() - started, error
            )

    # -- handling ----------------------------------------------------------------------------

    @contextmanager
    def processing(
        self, group: str, topic: str, handled: Sequence[Any], attempt: int, partition: Any = None
    ) -> Iterator[None]:
        """Around one handler call for the messages of ``handled`` (deliveries or messages;
        one unless a batch)."""
        messages = [getattr(h, "message", h) for h in handled]
        started = time.perf_counter()
        self._instruments.latency(self.system, topic, group, messages)
        try:
            if self._spans is None:
                yield
            else:
                with self._spans.process(topic, group, messages, attempt, partition):
                    yield
        finally:
            self._instruments.processed(self.system, topic, group, time.perf_counter() - started)

    def outcome(self, group: str, topic: str, outcome: str, error: BaseException | None) -> None:
        """What became of a handled message: ``ok``, ``retried``, ``dead_lettered`` or
        ``undecodable``; a failure is recorded on the current span."""
        self._instruments.consumed(self.system, topic, group, outcome, error)
        if self._spans is not None and error is not None:
            self._spans.failed(error, dead_lettered=outcome in ("dead_lettered", "undecodable"))


def final_outcome(error: BaseException) -> str:
    """The outcome of a message whose last attempt failed with ``error``."""
    return "undecodable" if isinstance(error, (DecodeError, MessageTooLarge)) else "dead_lettered"
