"""tidings' metrics, through the OpenTelemetry metrics API.

Named after the messaging conventions where they have one, tidings' own otherwise. Every one
carries ``messaging.system`` and ``messaging.destination.name`` (the topic); those of consumers
carry ``messaging.consumer.group.name`` too.

=======================================  =========  ============================================
``messaging.client.sent.messages``       counter    messages published (``error.type`` if failed)
``messaging.client.operation.duration``  histogram  seconds one publish call took
``messaging.client.consumed.messages``   counter    messages handled, by ``tidings.outcome``:
                                                    ``ok``, ``retried``, ``dead_lettered``,
                                                    ``undecodable``
``messaging.process.duration``           histogram  seconds one handler call took
``tidings.message.latency``              histogram  seconds from publish to the start of handling
``tidings.dead_letters``                 counter    messages dead-lettered (``error.type``)
``tidings.consumer.in_flight``           gauge      messages a consumer holds (fetched, running)
``tidings.consumer.up``                  gauge      1 while a consumer runs, 0 restarting/failed
``tidings.consumer.lag``                 gauge      messages a group has not acknowledged yet
                                                    (transports that keep groups)
=======================================  =========  ============================================
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from tidings.message import Message
from tidings.telemetry.providers import provider_in_use
from tidings.topics import CACHE_SIZE

__all__ = [
    "Instruments",
    "Reading",
    "Readings",
    "instruments_for",
    "meter_configured",
    "per_meter",
]

T = TypeVar("T")

Reading = list[tuple[float, dict[str, str]]]
"""One gauge's values with their attributes."""
Readings = Callable[[], tuple[Reading, Reading, Reading]]
"""What one bus reports when the metrics are collected: in flight, up, lag."""


def meter_configured(provider: Any = None) -> Any | None:
    """tidings' meter on ``provider``, or on the global one if the application set it."""
    provider = provider_in_use(provider, "opentelemetry.metrics", "get_meter_provider")
    if provider is None:
        return None
    return provider.get_meter("tidings")


def instruments_for(meter: Any | None) -> Instruments:
    """The instruments on ``meter``, made once per meter (every bus of the process shares them)."""
    if meter is None:
        return _OFF
    return per_meter(meter, Instruments)


def per_meter(meter: Any, kind: Callable[[Any], T]) -> T:
    """``kind(meter)``, made once per meter and kind: every bus (or event store) of the process
    records into the same instruments."""
    made = _BY_METER.get(meter)
    if made is None:
        made = _BY_METER[meter] = {}
    found = made.get(kind)
    if found is None:
        found = made[kind] = kind(meter)
    return cast(T, found)


class Instruments:
    """The instruments on one meter; every method does nothing without a meter."""

    def __init__(self, meter: Any | None) -> None:
        self.on = self._on = meter is not None
        self._readings: list[weakref.WeakMethod[Readings]] = []
        self._gauges = False
        if meter is None:
            return
        self._meter = meter
        self._sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Messages published"
        )
        self._publish = meter.create_histogram(
            "messaging.client.operation.duration", unit="s", description="Publish call duration"
        )
        self._consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages handled, by outcome",
        )
        self._process = meter.create_histogram(
            "messaging.process.duration", unit="s", description="Handler call duration"
        )
        self._latency = meter.create_histogram(
            "tidings.message.latency", unit="s", description="Publish to start of handling"
        )
        self._dead = meter.create_counter(
            "tidings.dead_letters", unit="{message}", description="Messages dead-lettered"
        )

    def sent(
        self, system: str, topic: str, count: int, duration: float, error: BaseException | None
    ) -> None:
        if not self._on:
            return
        failed = type(error).__qualname__ if error is not None else None
        self._sent.add(count, _where(system, topic, None, "error.type", failed))
        self._publish.record(duration, _where(system, topic, None, "error.type", failed, True))

    def latency(self, system: str, topic: str, group: str, messages: Sequence[Message]) -> None:
        if not self._on:
            return
        now = time.time()
        attributes = _where(system, topic, group)
        for message in messages:
            self._latency.record(max(now - message.timestamp, 0.0), attributes)

    def processed(self, system: str, topic: str, group: str, duration: float) -> None:
        if self._on:
            self._process.record(duration, _where(system, topic, group))

    def consumed(
        self, system: str, topic: str, group: str, outcome: str, error: BaseException | None
    ) -> None:
        if not self._on:
            return
        self._consumed.add(1, _where(system, topic, group, "tidings.outcome", outcome))
        if outcome in ("dead_lettered", "undecodable"):
            kind = type(error).__qualname__ if error is not None else "unknown"
            self._dead.add(1, _where(system, topic, group, "error.type", kind))

    def watch(self, readings: Readings) -> None:
        """Report ``readings`` in the gauges while the object it is bound to lives."""
        if not self._on:
            return
        self._readings.append(weakref.WeakMethod(readings))
        if self._gauges:
            return
        self._gauges = True
        from opentelemetry.metrics import Observation

        def observe(which: int) -> Callable[[Any], list[Observation]]:
            def callback(_options: Any) -> list[Observation]:
                found = []
                for reference in list(self._readings):
                    read = reference()
                    if read is None:
                        self._readings.remove(reference)
                        continue
                    found += [Observation(v, a) for v, a in read()[which]]
                return found

            return callback

        meter = self._meter
        meter.create_observable_gauge("tidings.consumer.in_flight", [observe(0)], unit="{message}")
        meter.create_observable_gauge("tidings.consumer.up", [observe(1)])
        meter.create_observable_gauge("tidings.consumer.lag", [observe(2)], unit="{message}")


@functools.lru_cache(maxsize=CACHE_SIZE)
def _where(
    system: str,
    topic: str,
    group: str | None = None,
    name: str | None = None,
    value: str | None = None,
    publish: bool = False,
) -> dict[str, str]:
    """A measurement's attributes, made once per distinct set (the SDK only reads them)."""
    attributes = {"messaging.system": system, "messaging.destination.name": topic}
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    if name is not None and value is not None:
        attributes[name] = value
    if publish:
        attributes["messaging.operation.name"] = "publish"
    return attributes


_OFF = Instruments(None)
_BY_METER: weakref.WeakKeyDictionary[Any, dict[Callable[[Any], Any], Any]] = (
    weakref.WeakKeyDictionary()
)
