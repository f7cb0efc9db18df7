"""Conformance cases for messages tidings did not write (part of TransportSuite): another
producer's garbage envelope headers, and hostile payloads.

A transport's test class provides the ``foreign_publish`` fixture: an async
``(topic, data, headers) -> None`` writing one message with the broker's own client, the way a
producer that does not use tidings would. Envelope headers (``tidings-type``, ``-id``, ``-time``,
``-key``) go where this broker's tidings messages carry them (a native property, a stream field,
a column); the others travel as the broker's headers, unchanged bytes where the broker allows.
Without the fixture (the in-process transport) the foreign-producer case is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tidings.message import Message
from tidings.middleware.retry import Retry
from tidings.testing.receiver import PROBE_HEADER, TransportFactory, unique, waiting
from tidings.testing.suite_bus import BusCases, SuiteEvent, _Handled

__all__ = ["DEEP", "ForeignProducerCases", "ForeignPublish"]

ForeignPublish = Callable[[str, bytes, dict[str, bytes]], Awaitable[None]]

DEEP = b'{"n": -1, "deep": ' + b"[" * 1000 + b"]" * 1000 + b"}"
"""2 KB of JSON nested 1,000 deep: past msgspec's recursion limit, even in a field it skips."""


class ForeignProducerCases(BusCases):
    """Cases with messages tidings did not write; see the module docstring for the fixture."""

    @pytest.fixture
    def foreign_publish(self) -> ForeignPublish | None:
        return None

    async def test_foreign_producer_garbage(
        self, transport_factory: TransportFactory, foreign_publish: ForeignPublish | None
    ) -> None:
        """Another producer's messages between good ones: garbage envelope headers and values
        that are not UTF-8 fall back (handled), an unreadable envelope or a hostile payload is
        dead-lettered once with its reason and raw bytes; every good message is handled and the
        consumer keeps going."""
        if foreign_publish is None:
            pytest.skip("no foreign_publish fixture for this transport")
        topic, handled = unique("suite.foreign"), _Handled()
        received: list[Message] = []
        progress = asyncio.Event()

        async def handle(message: Message) -> None:
            handled.saw(message.data)
            if PROBE_HEADER not in message.headers:
                received.append(message)
                progress.set()

        garbage = {
            "tidings-type": b"tidings.testing.suite_event",
            "tidings-id": b"\xff\xfe",
            "tidings-time": b"xx",
            "tidings-key": b"k\xff",
            "tidings-attempt": b"zz",
            "h": b"\xff\xfe",
            "plain": b"ok",
        }
        retry = Retry(max_attempts=5, initial_delay=0.01, jitter=False)
        async with self.running(transport_factory, topic, handled, handler=handle, retry=retry) as (
            bus,
            letters,
        ):
            letters.changed = progress  # a dead letter wakes the wait below too

            def settled() -> bool:
                lettered = {letter.data for letter in letters.added}
                return bool(
                    handled.calls[1]
                    and handled.calls[4]
                    and any(isinstance(m.data, dict) for m in received)
                    and DEEP in lettered
                    and (handled.calls[2] or b'{"n": 2}' in lettered)
                )

            await bus.publish(SuiteEvent(1), topic=topic)
            await foreign_publish(topic, b'{"n": 2}', garbage)
            await foreign_publish(topic, b'{"n": 3}', {})
            await foreign_publish(topic, DEEP, {"tidings-type": b"tidings.testing.suite_event"})
            await bus.publish(SuiteEvent(4), topic=topic)
            async with waiting(self.timeout, "every message handled or dead-lettered"):
                while not settled():
                    progress.clear()
                    await progress.wait()
            await bus.publish(SuiteEvent(5), topic=topic)
            await handled.until(lambda: handled.calls[5] == 1, "a later event", self.timeout)
            found = {letter.data: letter for letter in await bus.dead_letters.list(topic=topic)}
        assert all(handled.calls[n] == 1 for n in (1, 4, 5)), handled.calls
        (bare,) = [m for m in received if isinstance(m.data, dict)]
        assert (bare.type, bare.data) == (topic, {"n": 3})
        assert bare.id
        deep = found.pop(DEEP)
        assert deep.error_type.endswith("DecodeError")
        assert deep.attempts == 1
        if handled.calls[2]:  # the envelope's fields fell back one by one
            (fallen_back,) = [m for m in received if m.data == SuiteEvent(2)]
            assert fallen_back.headers["h"] == "\ufffd\ufffd"
            assert fallen_back.headers["plain"] == "ok"
            assert not any(name.startswith("tidings-") for name in fallen_back.headers)
            assert fallen_back.id
            assert fallen_back.time.year >= 2020
        else:  # the envelope could not be read at all
            unreadable = found.pop(b'{"n": 2}')
            assert unreadable.error_type.endswith("DecodeError")
            assert "unreadable message envelope" in unreadable.error_message
            assert unreadable.attempts == 1
        assert found == {}, "nothing else dead-lettered"

    @pytest.mark.parametrize("batch", [False, True], ids=["plain", "batch"])
    async def test_deep_nesting_dead_lettered(
        self, transport_factory: TransportFactory, batch: bool
    ) -> None:
        """A 1,000-deep JSON payload among 100 good events, for a plain and a batch handler:
        all 100 handled, the deep one dead-lettered once as a DecodeError, never retried."""
        topic, handled = unique("suite.deep"), _Handled()

        async def plain(value: object) -> None:
            handled.saw(value)

        async def batched(values: list[object]) -> None:
            for value in values:
                handled.saw(value)

        handler: Any = batched if batch else plain
        retry = Retry(max_attempts=5, initial_delay=0.01, jitter=False)
        async with self.running(
            transport_factory, topic, handled, handler=handler, retry=retry
        ) as (bus, letters):
            for n in range(100):
                if n == 50:
                    await bus.publish(Message("tidings.testing.suite_event", DEEP), topic=topic)
                await bus.publish(SuiteEvent(n), topic=topic)
            await handled.until(
                lambda: len(handled.calls) == 100, "all 100 good events", self.timeout
            )
            await letters.until(1)
            (letter,) = await bus.dead_letters.list(topic=topic)
        assert letter.error_type.endswith("DecodeError")
        assert letter.attempts == 1, "not retried"
        assert letter.data == DEEP
        assert set(handled.calls.values()) == {1}
