"""A model-based test of the in-process bus: nothing accepted is ever lost.

Hypothesis subscribes and unsubscribes handlers that succeed, fail, take a while or hang, publishes
(sometimes cancelling the publisher while it waits for room), lets the loop run, and finally closes
the bus, with or without a timeout. Whatever the order, every message accepted for a group is
handled by that group exactly once or is in the dead-letter store for that group, never both; a
publish that was cancelled reached no group at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tidings
from tidings import Bus, Message
from tidings.route import Route

TOPIC = "machine.item"
BEHAVIOURS = ("ok", "fail", "slow", "hang")
QUICK_RETRY = tidings.Retry(max_attempts=2, initial_delay=0.001, jitter=False)


@dataclass(frozen=True)
class Subscribed:
    route: Route
    group: str


class BusMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.run = self.runner.run
        self.subscribed: list[Subscribed] = []
        self.accepted: set[tuple[str, str]] = set()  # (message id, group)
        self.refused: set[str] = set()  # ids of publishes that were cancelled
        self.handled: list[tuple[str, str]] = []
        self.number = 0

    @initialize(capacity=st.integers(1, 6))
    def start(self, capacity: int) -> None:
        self.bus = Bus(capacity=capacity, handler_timeout=0.02)
        self.run(self.bus.start())

    def _handler(self, group: str, behaviour: str) -> Callable[[Message], Awaitable[None]]:
        handled = self.handled

        async def handler(message: Message) -> None:
            if behaviour == "fail":
                raise RuntimeError("refused")
            if behaviour == "slow":
                for _ in range(3):
                    await asyncio.sleep(0)
            if behaviour == "hang":
                await asyncio.Event().wait()
            handled.append((message.id, group))

        return handler

    @precondition(lambda self: len(self.subscribed) < 4)
    @rule(group=st.sampled_from("abc"), behaviour=st.sampled_from(BEHAVIOURS))
    def subscribe(self, group: str, behaviour: str) -> None:
        handler = self._handler(group, behaviour)
        name = f"{group}-{behaviour}-{len(self.subscribed)}"

        async def subscribe() -> Route:  # on a running bus: it starts a consumer Task
            return self.bus.subscribe(
                TOPIC, handler, group=group, name=name, retry=QUICK_RETRY, concurrency=2
            )

        self.subscribed.append(Subscribed(self.run(subscribe()), group))

    @precondition(lambda self: self.subscribed)
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sampled_from(self.subscribed))
        self.subscribed.remove(chosen)

        async def unsubscribe() -> None:
            self.bus.unsubscribe(chosen.route)

        self.run(unsubscribe())

    @rule(count=st.integers(1, 5))
    def publish(self, count: int) -> None:
        async def publish() -> None:
            for _ in range(count):
                groups = {s.group for s in self.subscribed}
                message = await self.bus.publish(self._next(), topic=TOPIC)
                self.accepted.update((message.id, group) for group in groups)

        self.run(publish())

    @rule(turns=st.integers(0, 3))
    def publish_cancelled(self, turns: int) -> None:
        async def publish() -> None:
            groups = {s.group for s in self.subscribed}
            message = self.bus.message(self._next())
            task = asyncio.ensure_future(self.bus.publish(message, topic=TOPIC))
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                self.refused.add(message.id)
            else:
                self.accepted.update((message.id, group) for group in groups)

        self.run(publish())

    @rule(turns=st.integers(1, 20))
    def let_run(self, turns: int) -> None:
        async def turn() -> None:
            for _ in range(turns):
                await asyncio.sleep(0)

        self.run(turn())

    def _next(self) -> dict[str, int]:
        self.number += 1
        return {"n": self.number}

    def teardown(self) -> None:
        try:
            if hasattr(self, "bus"):
                self._close_and_count()
        finally:
            self.runner.close()

    def _close_and_count(self) -> None:
        self.run(self.bus.aclose(timeout=0.05))
        letters = self.run(self.bus.dead_letters.list(limit=100_000))
        lettered = {(letter.message_id, letter.group) for letter in letters}
        handled = set(self.handled)
        assert len(handled) == len(self.handled), "a message was handled twice by one group"
        assert not handled & lettered, "handled and dead-lettered"
        assert handled | lettered == self.accepted
        assert not {message_id for message_id, _ in self.accepted} & self.refused


def test_nothing_accepted_is_lost() -> None:
    run_state_machine_as_test(
        BusMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
