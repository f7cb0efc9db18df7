"""Conformance cases that run through the Bus and its consumer loop (part of TransportSuite):
retries, dead letters with their reasons, malformed payloads, and the concurrency bound."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pytest

from tidings.bus import Bus
from tidings.codec import event
from tidings.dead_letters import DeadLetterStore
from tidings.message import Message
from tidings.middleware.retry import Retry
from tidings.telemetry import Telemetry
from tidings.testing.dead_letters import RecordingDeadLetters
from tidings.testing.receiver import PROBE_HEADER, TransportFactory, unique, waiting

__all__ = ["BusCases", "Probed", "SuiteEvent", "WatchedDeadLetters"]


@event("tidings.testing.suite_event")
@dataclass(frozen=True)
class SuiteEvent:
    n: int


class WatchedDeadLetters(RecordingDeadLetters):
    """Recording dead letters that a case can await, with the suite's timeout and message."""

    def __init__(self, store: DeadLetterStore, timeout: float) -> None:
        super().__init__(store)
        self._timeout = timeout

    async def until(self, count: int, timeout: float | None = None) -> None:
        async with waiting(timeout or self._timeout, f"{count} dead letters"):
            await super().until(count, timeout or self._timeout)


class Probed(Protocol):
    """What :meth:`BusCases.running` needs of a case's record of handled events."""

    probed: asyncio.Event
    """Set once the handler saw a probe."""


class _Handled:
    """What a test handler saw: SuiteEvents by number, and whether a probe arrived."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.probed = asyncio.Event()
        self._changed = asyncio.Event()

    def saw(self, value: Any) -> int | None:
        """Record ``value``; returns its number, or None for a probe."""
        if not isinstance(value, SuiteEvent):
            self.probed.set()
            return None
        self.calls[value.n] += 1
        self._changed.set()
        return value.n

    async def until(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        async with waiting(timeout, what):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


class BusCases:
    timeout: ClassVar[float] = 30.0

    @contextlib.asynccontextmanager
    async def running(
        self,
        factory: TransportFactory,
        topic: str,
        handled: Probed,
        telemetry: Telemetry | None = None,
        **subscribe: Any,
    ) -> AsyncIterator[tuple[Bus, WatchedDeadLetters]]:
        """A started Bus on a new transport with one subscription to ``topic``, able to receive
        (probed: see :func:`~tidings.testing.receiver.prime`)."""
        transport = factory()
        letters = WatchedDeadLetters(transport.dead_letters(), self.timeout)
        bus = Bus(transport, dead_letters=letters, telemetry=telemetry)
        subscribe.setdefault("group", unique("group"))
        bus.subscribe(topic, subscribe.pop("handler"), **subscribe)
        async with bus:
            async with waiting(self.timeout, f"the bus to receive on {topic!r}"):
                while not handled.probed.is_set():
                    probe = Message("tidings.probe", b"{}", {PROBE_HEADER: "1"})
                    await bus.publish(probe, topic=topic)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            await handled.probed.wait()
            yield bus, letters

    async def test_continue_after_errors(self, transport_factory: TransportFactory) -> None:
        """Handlers failing on half the messages do not stop the consumer: with retries every
        message is handled."""
        topic, handled, done = unique("suite.errors"), _Handled(), set[int]()

        async def handle(value: object) -> None:
            n = handled.saw(value)
            if n is not None and n % 2 == 0 and handled.calls[n] == 1:
                raise RuntimeError(f"failing {n} once")
            if n is not None:
                done.add(n)

        retry = Retry(max_attempts=3, initial_delay=0.01, jitter=False)
        async with self.running(
            transport_factory, topic, handled, handler=handle, retry=retry, concurrency=4
        ) as (bus, _):
            for n in range(50):
                await bus.publish(SuiteEvent(n), topic=topic)
            await handled.until(lambda: len(done) == 50, "all 50 events handled", self.timeout)
        assert all(handled.calls[n] >= 2 for n in range(0, 50, 2)), "failed ones were retried"

    async def test_dead_letter_after_max_attempts(
        self, transport_factory: TransportFactory
    ) -> None:
        """After its last attempt a message is dead-lettered with the reason, and not retried."""
        topic, handled = unique("suite.dlq"), _Handled()

        async def handle(value: object) -> None:
            n = handled.saw(value)
            if n is not None:
                raise ValueError(f"boom {n}")

        retry = Retry(max_attempts=3, initial_delay=0.01, jitter=False)
        async with self.running(transport_factory, topic, handled, handler=handle, retry=retry) as (
            bus,
            letters,
        ):
            sent = await bus.publish(SuiteEvent(7), topic=topic, key="k", headers={"h": "v"})
            await letters.until(1)
            (letter,) = await bus.dead_letters.list(topic=topic)
            assert letter.message_id == sent.id
            assert letter.error_type.endswith("ValueError")
            assert letter.error_message == "boom 7"
            assert "boom 7" in letter.traceback
            assert letter.attempts == 3
            assert (letter.topic, letter.key, letter.headers.get("h")) == (topic, "k", "v")
            assert bus.codec.decode(letter.data, SuiteEvent) == SuiteEvent(7)
            assert await bus.dead_letters.show(letter.id) == letter
            await bus.publish(SuiteEvent(8), topic=topic)
            await letters.until(2)
        assert handled.calls[7] == 3, "dead-lettered after exactly max_attempts calls"

    async def test_malformed_payload_dead_lettered(
        self, transport_factory: TransportFactory
    ) -> None:
        """A payload that cannot be decoded is dead-lettered at once; the next one is handled."""
        topic, handled = unique("suite.malformed"), _Handled()

        async def handle(value: SuiteEvent) -> None:
            handled.saw(value)

        async with self.running(
            transport_factory, topic, handled, handler=handle, retry=Retry(max_attempts=5)
        ) as (bus, letters):
            bad = Message("tidings.testing.suite_event", b'{"n": "not a number"')
            await bus.publish(bad, topic=topic)
            await bus.publish(SuiteEvent(1), topic=topic)
            await handled.until(lambda: handled.calls[1] == 1, "the good event", self.timeout)
            await letters.until(1)
            (letter,) = await bus.dead_letters.list(topic=topic)
            assert letter.message_id == bad.id
            assert letter.error_type.endswith("DecodeError")
            assert letter.attempts == 1
            assert letter.data == bad.data

    async def test_concurrency_limit(self, transport_factory: TransportFactory) -> None:
        """With ``concurrency=N`` handlers run N at once, never more."""
        limit, count = 4, 40
        topic, handled = unique("suite.limit"), _Handled()
        running, most = 0, 0
        full = asyncio.Event()

        async def handle(value: object) -> None:
            nonlocal running, most
            if handled.saw(value) is None:
                return
            running += 1
            most = max(most, running)
            if running == limit:
                full.set()
            try:
                await full.wait()  # the first N wait for each other: N run at once
            finally:
                running -= 1

        async with self.running(
            transport_factory, topic, handled, handler=handle, concurrency=limit
        ) as (bus, _):
            for n in range(count):
                await bus.publish(SuiteEvent(n), topic=topic)
            await handled.until(
                lambda: len(handled.calls) == count, f"{count} events handled", self.timeout
            )
        assert most == limit, f"{most} handlers ran at once with concurrency={limit}"

    async def test_keyed_publish_many(self, transport_factory: TransportFactory) -> None:
        """``publish_many`` with ``key=`` gives each message its key, and messages made with
        ``bus.message`` keep their own key and headers, in one call."""
        topic, handled, received = unique("suite.keyed"), _Handled(), dict[int, Message]()

        async def handle(message: Message) -> None:
            n = handled.saw(message.data)
            if n is not None:
                received[n] = message

        async with self.running(transport_factory, topic, handled, handler=handle) as (bus, _):
            await bus.publish_many(
                [SuiteEvent(n) for n in range(10)], topic=topic, key=lambda e: f"k{e.n % 3}"
            )
            made = [bus.message(SuiteEvent(n), key="own", headers={"h": str(n)}) for n in (10, 11)]
            await bus.publish_many(made, topic=topic)
            await handled.until(lambda: len(received) == 12, "all 12 events", self.timeout)
        assert {n: m.key for n, m in received.items()} == {
            **{n: f"k{n % 3}" for n in range(10)},
            10: "own",
            11: "own",
        }
        assert [received[n].headers["h"] for n in (10, 11)] == ["10", "11"]

    async def test_close_gives_back_what_waits_behind_a_running_key(
        self, transport_factory: TransportFactory
    ) -> None:
        """Closing an ordered Bus while a key's message runs gives back the messages of that key
        waiting behind it: the closing Bus does not run them, the group's next one does, in
        order."""
        if not transport_factory().features.persistent:
            pytest.skip("in process, closing gracefully handles everything queued")
        topic, group = unique("suite.close.parked"), unique("group")
        first, second = _Handled(), _Handled()
        order: list[int] = []
        running, release = asyncio.Event(), asyncio.Event()

        async def hold_the_first(value: object) -> None:
            n = first.saw(value)
            if n == 0:
                running.set()
                await release.wait()

        subscribe: dict[str, Any] = {"group": group, "ordered": True, "concurrency": 2}
        async with self.running(
            transport_factory, topic, first, handler=hold_the_first, **subscribe
        ) as (bus, _):
            events = [SuiteEvent(n) for n in range(10)]
            await bus.publish_many(events, topic=topic, key=lambda _: "k")
            async with waiting(self.timeout, "the first message running"):
                await running.wait()
            await _until_in_flight(bus, 10, self.timeout)  # one running, nine waiting for it
            closing = asyncio.ensure_future(bus.aclose())
            await _until_in_flight(bus, 1, self.timeout)  # the nine were given back
            release.set()
            await closing
        assert set(first.calls) == {0}, "the closing Bus ran only the message it had started"

        async def record(value: object) -> None:
            n = second.saw(value)
            if n is not None:
                order.append(n)

        async with self.running(transport_factory, topic, second, handler=record, **subscribe):
            await second.until(lambda: len(second.calls) == 9, "the nine again", self.timeout)
        assert order == list(range(1, 10)), "given back, then handled in order"

    async def test_concurrent_publishers_coalesce(
        self, transport_factory: TransportFactory
    ) -> None:
        """64 tasks publishing one event at a time, at once: each publish returns once its own
        event was accepted, and every event is handled once."""
        topic, handled = unique("suite.coalesce"), _Handled()

        async def handle(value: object) -> None:
            handled.saw(value)

        async with self.running(transport_factory, topic, handled, handler=handle) as (bus, _):

            async def publisher(first: int) -> None:
                for n in range(first, first + 10):
                    await bus.publish(SuiteEvent(n), topic=topic)

            await asyncio.gather(*(publisher(task * 10) for task in range(64)))
            await handled.until(lambda: len(handled.calls) == 640, "all 640 events", self.timeout)
        assert set(handled.calls.values()) == {1}

    async def test_health_shows_the_partitions_each_consumer_reads(
        self, transport_factory: TransportFactory
    ) -> None:
        """A lone consumer of a group reads every partition; once a second one joins, each
        reads its own part of them, and ``bus.health()`` says which."""
        topic, group = unique("suite.partitions"), unique("group")

        async def ignore(value: object) -> None:
            pass

        def bus() -> Bus:
            made = Bus(transport_factory())
            made.subscribe(topic, ignore, group=group, ordered=True)
            return made

        def reads(of: Bus) -> tuple[int, ...] | None:
            return of.health().routes[0].partitions

        async with bus() as one:
            if reads(one) is None:
                pytest.skip("the transport shares keys without partitions")
            await _until(lambda: bool(reads(one)), "the first consumer's partitions", self.timeout)
            every = reads(one)
            assert every == tuple(range(len(every or ()))), "alone, it reads all of them"
            async with bus() as two:

                def spread() -> bool:
                    a, b = set(reads(one) or ()), set(reads(two) or ())
                    return bool(a and b) and not a & b and a | b == set(every or ())

                await _until(spread, "the partitions spread over both", self.timeout)


async def _until_in_flight(bus: Bus, count: int, timeout: float) -> None:
    """Return once the Bus holds ``count`` messages (running, fetched or waiting for their key)."""

    def held() -> bool:
        return sum(route.in_flight for route in bus.health().routes) == count

    await _until(held, f"{count} messages in flight", timeout)


async def _until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Return once ``condition()`` holds of what ``bus.health()`` shows; health tells no one
    when it changes, so it is read every few milliseconds."""
    async with waiting(timeout, what):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
