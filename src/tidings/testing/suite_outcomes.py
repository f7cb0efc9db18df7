"""Suite cases: ``bus.outcomes()`` reports every message's final fate once, on every transport
(part of TransportSuite)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tidings.message import Message
from tidings.middleware.retry import Retry
from tidings.outcome_stream import (
    Failed,
    FinalOutcome,
    Handled,
    Missed,
    OutcomeStream,
    Undecodable,
)
from tidings.testing.receiver import PROBE_HEADER, TransportFactory, unique, waiting
from tidings.testing.suite_bus import BusCases, SuiteEvent, _Handled

__all__ = ["OutcomeCases"]

COUNT = 100
RETRY = Retry(max_attempts=3, initial_delay=0.01, jitter=False)


def failures(n: int) -> int:
    """How often the handler fails event ``n`` before it succeeds: 0 for two in five (handled
    at once), 1 or 2 (handled after retries), or always (dead-lettered after three attempts)."""
    return {0: 0, 1: 0, 2: 1, 3: 2}.get(n % 5, 99)


class OutcomeCases(BusCases):
    async def test_every_final_outcome_once(self, transport_factory: TransportFactory) -> None:
        """100 events, some handled at once, some after one or two retries, some dead-lettered
        after three attempts, and one undecodable payload: each message's final outcome is
        reported exactly once, with its attempts, topic, group and dead letter."""
        await self.every_final_outcome_once(transport_factory)

    async def test_every_final_outcome_once_ordered(
        self, transport_factory: TransportFactory
    ) -> None:
        """The same on an ordered route, where a keyed message is retried in place."""
        await self.every_final_outcome_once(transport_factory, ordered=True, concurrency=4)

    async def every_final_outcome_once(self, factory: TransportFactory, **route: Any) -> None:
        topic, group, handled = unique("suite.outcomes"), unique("group"), _Handled()

        async def handle(value: object) -> None:
            n = handled.saw(value)
            if n is not None and handled.calls[n] <= failures(n):
                raise ValueError(f"event {n} fails")

        async with self.running(
            factory, topic, handled, handler=handle, group=group, name="outcomes", retry=RETRY,
            **route,
        ) as (bus, _):  # fmt: skip
            collected = _Collected()
            reading = asyncio.create_task(collected.read(bus.outcomes(group=group)))
            sent: dict[str, int | None] = {}  # message id -> event number (None: undecodable)
            bad = Message("tidings.testing.suite_event", b'{"n": "not a number"')
            sent[bad.id] = None
            await bus.publish(bad, topic=topic)
            for n in range(COUNT):
                message = await bus.publish(SuiteEvent(n), topic=topic, key=f"key-{n % 7}")
                sent[message.id] = n
            async with waiting(self.timeout, "every message's final outcome"):
                await collected.until(set(sent))
            stored = {letter.id for letter in await bus.dead_letters.list(topic=topic, limit=1000)}
        await reading  # the stream ended with the bus: a duplicate would be in it
        outcomes = collected.outcomes
        seen = Counter(outcome.message.id for outcome in outcomes)
        assert seen == dict.fromkeys(sent, 1), "each message's final outcome, exactly once"
        for outcome in outcomes:
            number = sent[outcome.message.id]
            assert (outcome.route, outcome.group, outcome.topic) == ("outcomes", group, topic)
            if number is None:
                assert isinstance(outcome, Undecodable), outcome
                assert outcome.error_type.endswith("DecodeError"), outcome
                assert outcome.attempts == 1
            elif failures(number) < RETRY.max_attempts:
                assert isinstance(outcome, Handled), (number, outcome)
                assert outcome.attempts == failures(number) + 1, (number, outcome)
            else:
                assert isinstance(outcome, Failed), (number, outcome)
                expected = (RETRY.max_attempts, f"event {number} fails")
                assert (outcome.attempts, outcome.error_message) == expected
        failed = {o.dead_letter_id for o in outcomes if isinstance(o, Failed)}
        assert failed == stored, "each Failed names its dead letter"


class _Collected:
    """The outcomes of a stream, probes left out, as they arrive; none may be missed."""

    def __init__(self) -> None:
        self.outcomes: list[FinalOutcome] = []
        self._ids: set[str] = set()
        self._changed = asyncio.Event()
        self._ended = False

    async def read(self, stream: OutcomeStream) -> None:
        try:
            async for item in stream:
                assert not isinstance(item, Missed), f"the stream dropped {item.count} outcomes"
                if PROBE_HEADER not in item.message.headers:
                    self.outcomes.append(item)
                    self._ids.add(item.message.id)
                    self._changed.set()
        finally:
            self._ended = True
            self._changed.set()

    async def until(self, ids: set[str]) -> None:
        """Return once each of ``ids`` has an outcome."""
        while not ids <= self._ids:
            assert not self._ended, "the stream ended early"
            self._changed.clear()
            await self._changed.wait()
