"""Suite cases: ``bus.request`` across two buses on one broker, as across two processes (part of
TransportSuite)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tidings.bus import Bus
from tidings.codec import event
from tidings.errors import NoResponder, RequestTimeout
from tidings.testing.receiver import TransportFactory, unique
from tidings.testing.suite_bus import BusCases, SuiteEvent, _Handled

__all__ = ["RequestCases", "SuiteAnswer"]


@event("tidings.testing.suite_answer")
@dataclass(frozen=True)
class SuiteAnswer:
    n: int
    doubled: int


class RequestCases(BusCases):
    async def test_request_reply(self, transport_factory: TransportFactory) -> None:
        """A bus answers 20 concurrent requests from another bus on the same broker: each
        request gets its own answer."""
        topic, handled = unique("suite.requests"), _Handled()

        async def answer(value: object) -> SuiteAnswer | None:
            n = handled.saw(value)
            return None if n is None else SuiteAnswer(n, 2 * n)

        running = self.running(transport_factory, topic, handled, handler=answer)
        async with running, Bus(transport_factory()) as requester:
            answers = await asyncio.gather(
                *(
                    requester.request(SuiteEvent(n), topic=topic, timeout=self.timeout)
                    for n in range(20)
                )
            )
        assert answers == [SuiteAnswer(n, 2 * n) for n in range(20)]

    async def test_request_without_answer(self, transport_factory: TransportFactory) -> None:
        """A request nobody answers raises RequestTimeout naming the topic; in process, where
        the bus knows nobody subscribes, NoResponder at once."""
        topic = unique("suite.unanswered")
        async with Bus(transport_factory()) as requester:
            local = requester.transport.features.in_process
            with pytest.raises(NoResponder if local else RequestTimeout, match=topic):
                await requester.request(SuiteEvent(1), topic=topic, timeout=0.5)
