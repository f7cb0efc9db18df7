"""The fault matrix (part of TransportSuite): each fault of :mod:`tidings.testing.faults`, for a
plain handler and a batch handler, on a Bus over the transport under test.

Every case publishes a few tens of events, injects its fault into them, and then checks: every
good event handled (exactly once, or once plus once per duplicate), every spoiled one
dead-lettered with its reason and not handled, handled + dead-lettered = published, and the
consumer still alive (an event published after the faults is handled).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest

from tidings.bus import Bus
from tidings.dead_letters import DeadLetter
from tidings.errors import ServiceUnavailable
from tidings.message import Message
from tidings.middleware import Middleware
from tidings.middleware.retry import Retry
from tidings.middleware.timeout import timeout
from tidings.testing.dead_letters import RecordingDeadLetters
from tidings.testing.faults import (
    Chance,
    FaultyTransport,
    HandlerFault,
    Times,
    Trigger,
    fail_times,
    fail_with_probability,
    hang,
    slow,
)
from tidings.testing.receiver import PROBE_HEADER, TransportFactory, unique
from tidings.testing.suite_bus import BusCases, SuiteEvent

__all__ = ["FaultCases"]

COUNT = 20
"""Events each case publishes before the sentinel."""

Shape = Literal["plain", "batch"]


class Crash(BaseException):
    """Not an Exception: what a stray BaseException from a handler looks like to the loop."""


@dataclass(frozen=True)
class _Case:
    handler_fault: Callable[[], HandlerFault] | None = None
    transport_faults: dict[str, Callable[[], Trigger]] = field(default_factory=dict)
    attempts: int = 1
    deadline: float | None = None
    """A timeout around the handler (outside the fault), so that a hang ends."""
    dead_letters: str | None = None
    """The error type of the dead letters the fault causes: the events it struck get one."""
    either: bool = False
    """Struck events may end handled or dead-lettered (the loop decides), never both or lost."""


_CASES = {
    "fail_times": _Case(lambda: fail_times(3), attempts=5),
    "fail_with_probability": _Case(
        lambda: fail_with_probability(0.3, seed=7), dead_letters="InjectedFault"
    ),
    "slow": _Case(lambda: slow(0.02, Chance(0.5, seed=3))),
    "hang": _Case(lambda: hang(Times(2)), attempts=3, deadline=0.2),
    "base_exception": _Case(lambda: fail_times(1, exc=Crash), attempts=3, either=True),
    "duplicate": _Case(transport_faults={"duplicate": lambda: Chance(0.3, seed=5)}),
    "corrupt_payload": _Case(
        transport_faults={"corrupt_payload": lambda: Chance(0.25, seed=11)},
        attempts=3,
        dead_letters="DecodeError",
    ),
    "corrupt_headers": _Case(transport_faults={"corrupt_headers": lambda: Chance(0.3, seed=13)}),
    "corrupt_headers_dead_lettered": _Case(
        lambda: fail_with_probability(0.3, seed=17),
        transport_faults={"corrupt_headers": lambda: Chance(1.0)},
        dead_letters="InjectedFault",
    ),
    "drop_publishes": _Case(transport_faults={"drop_publishes": lambda: Times(3)}),
    "drop_fetches": _Case(transport_faults={"drop_fetches": lambda: Times(2)}),
}
_PARAMS = [
    pytest.param(name, shape, id=f"{name}-{shape}")
    for name in _CASES
    for shape in ("plain", "batch")
]


class _Tally:
    """Handled events by number, and one signal for handling and dead-lettering alike."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.probed = asyncio.Event()
        self.changed = asyncio.Event()

    def saw(self, value: Any) -> None:
        n = _number(value)
        if n is None:
            self.probed.set()
            return
        self.calls[n] += 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool], what: str, patience: float) -> None:
        """Return once ``condition()`` holds; fail naming ``what`` after ``patience`` seconds
        in which nothing was handled or dead-lettered."""
        while not condition():
            self.changed.clear()
            try:
                async with asyncio.timeout(patience):
                    await self.changed.wait()
            except TimeoutError:
                raise AssertionError(
                    f"nothing happened for {patience:g}s while waiting for {what}; "
                    f"handled {dict(sorted(self.calls.items()))}"
                ) from None


def _number(value: Any) -> int | None:
    """The number of a suite event, whether decoded as one or, under a garbled type name, as
    plain JSON; None for a probe."""
    if isinstance(value, SuiteEvent):
        return value.n
    if isinstance(value, Message):
        return _number(value.data)
    if isinstance(value, dict) and isinstance(value.get("n"), int):
        return int(value["n"])
    return None


def _numbers(struck: Iterable[Any]) -> set[int]:
    """The numbers of the events in what a handler fault struck (messages, events, batches)."""
    found: set[int] = set()
    for argument in struck:
        for value in argument if isinstance(argument, list) else [argument]:
            n = _number(value)
            if n is not None:
                found.add(n)
    return found


async def _publish(bus: Bus, event: SuiteEvent, topic: str) -> Message:
    """Publish, trying again while the (injected) outage lasts: it lasts a number of calls."""
    while True:
        try:
            return await bus.publish(event, topic=topic)
        except ServiceUnavailable:
            continue


class _Run:
    """One case's bookkeeping: what was published, handled, dead-lettered and injected."""

    def __init__(
        self,
        spec: _Case,
        faulty: FaultyTransport,
        fault: HandlerFault | None,
        letters: RecordingDeadLetters,
        tally: _Tally,
    ) -> None:
        self.spec = spec
        self.faulty = faulty
        self.fault = fault
        self.letters = letters
        self.tally = tally
        self.number: dict[str, int] = {}
        """Published message id -> event number."""

    def duplicates(self) -> Counter[int]:
        return Counter(self.number.get(i, -1) for i in self.faulty.ids("duplicate"))

    def event_letters(self) -> list[DeadLetter]:
        """The dead letters but those of probes: a probe still on its way when the fault was
        armed may be struck too."""
        return [letter for letter in self.letters.added if PROBE_HEADER not in letter.headers]

    def dead(self) -> set[int]:
        return {self.number.get(letter.message_id, -1) for letter in self.event_letters()}

    def settled(self) -> bool:
        """Every event dead-lettered or handled (as many times as it was delivered)."""
        dead, twice, calls = self.dead(), self.duplicates(), self.tally.calls
        return all(n in dead or calls[n] >= 1 + twice[n] for n in range(COUNT))

    def spoiled(self) -> set[int]:
        """The events the fault should have sent to the dead-letter store."""
        if self.spec.dead_letters == "DecodeError":
            return {self.number[i] for i in self.faulty.ids("corrupt_payload") if i in self.number}
        if self.spec.dead_letters is not None and self.fault is not None:
            return _numbers(self.fault.struck)
        return set()

    def disarm(self) -> None:
        faulty = self.faulty
        faulty.duplicate = faulty.corrupt_payload = faulty.corrupt_headers = None
        faulty.drop_publishes = faulty.drop_fetches = None
        if self.fault is not None:
            self.fault.when = Times(0)

    def check(self, topic: str) -> None:
        dead, letters = self.dead(), self.event_letters()
        assert len(letters) == len(dead), "an event was dead-lettered twice"
        assert -1 not in dead, "a message that was not published was dead-lettered"
        handled = {n for n in range(COUNT) if self.tally.calls[n]}
        assert handled | dead == set(range(COUNT)), "an event was lost"
        assert not handled & dead, f"handled and dead-lettered: {handled & dead}"
        if self.spec.either:
            return
        assert dead == self.spoiled(), "dead-lettered exactly the events the fault spoiled"
        for letter in letters:
            assert letter.error_type.endswith(str(self.spec.dead_letters)), letter
            assert letter.topic == topic
            if self.spec.dead_letters == "DecodeError":
                assert letter.attempts == 1, "undecodable input is not retried"
        twice = self.duplicates()
        for n in handled:
            calls = self.tally.calls[n]
            assert calls == 1 + twice[n], (
                f"event {n} handled {calls} times, delivered {1 + twice[n]}"
            )


def _subscription(
    spec: _Case, shape: Shape, fault: HandlerFault | None, tally: _Tally
) -> dict[str, Any]:
    """``bus.subscribe`` arguments: the fault as middleware for the plain handler (a timeout
    outside it), as a wrapper for the batch handler (the route's timeout)."""

    async def handle(value: object) -> None:
        tally.saw(value)

    async def handle_batch(values: list[object]) -> None:
        for value in values:
            tally.saw(value)

    retry = Retry(max_attempts=spec.attempts, initial_delay=0.01, jitter=False)
    if shape == "batch":
        batch = handle_batch if fault is None else fault.wrap(handle_batch)
        return {"handler": batch, "retry": retry, "timeout": spec.deadline, "batch_size": 4}
    middleware: list[Middleware] = [] if fault is None else [fault]
    if spec.deadline is not None:
        middleware.insert(0, timeout(spec.deadline))
    return {"handler": handle, "retry": retry, "middleware": middleware, "concurrency": 4}


class FaultCases(BusCases):
    fault_patience: ClassVar[float] = 10.0
    """Seconds a fault case waits with nothing handled or dead-lettered before it fails."""

    @pytest.mark.parametrize(("case", "shape"), _PARAMS)
    async def test_fault(
        self, transport_factory: TransportFactory, case: str, shape: Shape
    ) -> None:
        """Under the fault, good events are handled, spoiled ones dead-lettered with their
        reason, nothing is lost, and the consumer lives on."""
        spec, tally, topic = _CASES[case], _Tally(), unique(f"suite.fault.{case}")
        faulty = FaultyTransport(
            transport_factory(), only=lambda m: PROBE_HEADER not in m.headers, seed=1
        )
        fault = spec.handler_fault() if spec.handler_fault else None
        strikes = fault.when if fault else None
        if fault is not None:
            fault.when = Times(0)  # armed once the bus receives: probes must not be struck
        subscribe = _subscription(spec, shape, fault, tally)
        try:
            async with self.running(lambda: faulty, topic, tally, **subscribe) as (bus, letters):
                letters.changed = tally.changed  # one signal for handled and dead-lettered
                run = _Run(spec, faulty, fault, letters, tally)
                if fault is not None:
                    fault.when = strikes
                for name, trigger in spec.transport_faults.items():
                    setattr(faulty, name, trigger())
                for n in range(COUNT):
                    run.number[(await _publish(bus, SuiteEvent(n), topic)).id] = n
                await tally.until(
                    run.settled, f"{COUNT} events handled or dead-lettered", self.fault_patience
                )
                run.disarm()
                await _publish(bus, SuiteEvent(COUNT), topic)
                await tally.until(
                    lambda: tally.calls[COUNT] == 1, "the sentinel", self.fault_patience
                )
        finally:
            await faulty.aclose()  # also when the bus failed to close it
        run.check(topic)
