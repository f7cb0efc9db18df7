"""tidings.testing.faults: seeded handler faults and a faulty transport, on the memory transport.

The fault matrix in TransportSuite runs the same faults on every transport; these tests pin
down what each fault does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from events import OrderPlaced, UserSignedUp

from tidings import Bus, Retry
from tidings.errors import HandlerTimeout, ServiceUnavailable
from tidings.handlers import describe
from tidings.message import Message
from tidings.middleware.timeout import timeout
from tidings.testing.faults import (
    Chance,
    FaultyTransport,
    Times,
    fail_times,
    fail_with_probability,
    hang,
    slow,
)
from tidings.transports.memory import MemoryTransport

FAST = Retry(max_attempts=5, initial_delay=0.001, jitter=False)


class Seen:
    """Events a handler saw, and a way to wait for a condition on them."""

    def __init__(self) -> None:
        self.ids: Counter[int] = Counter()
        self.changed = asyncio.Event()

    def add(self, event: UserSignedUp) -> None:
        self.ids[event.user_id] += 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def test_times_strikes_the_first_n_chances_only() -> None:
    trigger = Times(2)
    assert [trigger.strikes() for _ in range(4)] == [True, True, False, False]


def test_chance_with_the_same_seed_strikes_the_same_way() -> None:
    first, second = Chance(0.3, seed=42), Chance(0.3, seed=42)
    pattern = [first.strikes() for _ in range(200)]
    assert pattern == [second.strikes() for _ in range(200)]
    assert 30 < sum(pattern) < 90, "about 30% of the chances"
    assert not any(Chance(0.0).strikes() for _ in range(100))
    assert all(Chance(1.0).strikes() for _ in range(100))


@pytest.mark.parametrize("bad", [lambda: Times(-1), lambda: Chance(1.5), lambda: Chance(-0.1)])
def test_triggers_refuse_impossible_settings(bad: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="must"):
        bad()


async def test_fail_times_as_middleware_fails_the_first_calls_then_lets_them_through() -> None:
    fault, seen = fail_times(3), Seen()
    bus = Bus()
    bus.subscribe(UserSignedUp, seen.add, middleware=[fault], retry=FAST)
    async with bus:
        await bus.publish(UserSignedUp(1, "a"))
        await seen.until(lambda: seen.ids[1] == 1)
    assert (fault.calls, len(fault.struck)) == (4, 3)
    assert all(isinstance(m, Message) and m.data == UserSignedUp(1, "a") for m in fault.struck)
    assert await bus.dead_letters.list() == []


async def test_a_failing_fault_raises_the_given_error_and_is_dead_lettered_with_it() -> None:
    class Refused(Exception):
        pass

    bus = Bus()
    bus.subscribe(UserSignedUp, lambda e: None, middleware=[fail_times(1, exc=Refused)])
    async with bus:
        result = await bus.publish_and_wait(UserSignedUp(1, "a"))
    assert isinstance(result.errors[0], Refused)
    (letter,) = await bus.dead_letters.list()
    assert letter.error_type.endswith("Refused")
    assert letter.error_message == "injected failure 1"


async def test_fail_with_probability_records_which_calls_it_failed() -> None:
    fault, seen = fail_with_probability(0.5, seed=3), Seen()
    bus = Bus()
    bus.subscribe(UserSignedUp, seen.add, middleware=[fault])
    async with bus:
        for n in range(20):
            await bus.publish(UserSignedUp(n, "a"))
        await bus.drain()
    failed = {m.data.user_id for m in fault.struck}
    assert 0 < len(failed) < 20
    assert set(seen.ids) == set(range(20)) - failed
    letters = await bus.dead_letters.list()
    assert {letter.error_type.rsplit(".", 1)[-1] for letter in letters} == {"InjectedFault"}
    assert len(letters) == len(failed)


async def test_hang_lasts_until_a_timeout_cancels_it() -> None:
    fault = hang(Times(1))
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda e: None, middleware=[timeout(0.05), fault])
    async with bus:
        result = await bus.publish_and_wait(UserSignedUp(1, "a"))
        assert isinstance(result.errors[0], HandlerTimeout)
        assert (await bus.publish_and_wait(UserSignedUp(2, "b"))).ok, "struck once only"


async def test_slow_still_calls_the_handler() -> None:
    fault, seen = slow(0.001), Seen()
    bus = Bus()
    bus.subscribe(UserSignedUp, seen.add, middleware=[fault])
    async with bus:
        await bus.publish_and_wait(UserSignedUp(1, "a"))
    assert seen.ids == Counter({1: 1})
    assert fault.calls == len(fault.struck) == 1


async def test_wrap_keeps_a_batch_handler_a_batch_handler() -> None:
    batches: list[list[UserSignedUp]] = []

    def handle(events: list[UserSignedUp]) -> None:
        batches.append(events)

    fault = fail_times(1)
    wrapped = fault.wrap(handle)
    assert describe(wrapped).batch
    bus = Bus()
    bus.subscribe(UserSignedUp, wrapped, retry=FAST)
    async with bus:
        await bus.publish_many([UserSignedUp(n, "a") for n in range(3)])
        await bus.drain()
    assert sorted(e.user_id for batch in batches for e in batch) == [0, 1, 2]
    assert fault.struck[0] == [UserSignedUp(n, "a") for n in range(3)], "the batch it failed"


# -- FaultyTransport ------------------------------------------------------------------------


async def test_duplicate_delivers_a_message_twice() -> None:
    faulty, seen = FaultyTransport(MemoryTransport(), duplicate=Times(2)), Seen()
    bus = Bus(faulty)
    bus.subscribe(UserSignedUp, seen.add)
    async with bus:
        sent = [await bus.publish(UserSignedUp(n, "a")) for n in range(5)]
        await seen.until(lambda: sum(seen.ids.values()) == 7)
    assert faulty.ids("duplicate") == [sent[0].id, sent[1].id]
    assert seen.ids == Counter({0: 2, 1: 2, 2: 1, 3: 1, 4: 1})


async def test_corrupt_payload_is_dead_lettered_as_undecodable() -> None:
    faulty, seen = FaultyTransport(MemoryTransport(), corrupt_payload=Times(1)), Seen()
    bus = Bus(faulty)
    bus.subscribe(UserSignedUp, seen.add, retry=FAST)
    async with bus:
        sent = [await bus.publish(UserSignedUp(n, "a")) for n in range(3)]
        await seen.until(lambda: set(seen.ids) == {1, 2})
        (letter,) = await bus.dead_letters.list()
    assert faulty.ids("corrupt_payload") == [sent[0].id] == [letter.message_id]
    assert letter.error_type.endswith("DecodeError")
    assert letter.attempts == 1, "undecodable input is not retried"
    assert faulty.count("corrupt_payload") == 1


async def test_corrupt_headers_garble_the_envelope_but_keep_id_and_data() -> None:
    faulty = FaultyTransport(MemoryTransport(), corrupt_headers=Times(1), seed=5)
    received: list[Message] = []
    await faulty.start()
    subscription = faulty.subscribe("orders", group="g")
    original = Message("order.placed", OrderPlaced(1, "c"), {"tenant": "a"}, "k")
    await faulty.publish("orders", [original])
    async for batch in subscription:
        received.extend(d.message for d in batch)
        for delivery in batch:
            await delivery.ack()
        break
    await faulty.aclose()
    (garbled,) = received
    assert (garbled.id, garbled.data) == (original.id, original.data)
    assert garbled.type != original.type
    assert garbled.key != original.key
    assert garbled.headers["tenant"] != "a"
    assert {"tidings-id", "tidings-type", "tidings-time"} <= set(garbled.headers)


async def test_dropped_publishes_raise_service_unavailable_and_lose_nothing() -> None:
    faulty, seen = FaultyTransport(MemoryTransport(), drop_publishes=Times(2)), Seen()
    bus = Bus(faulty)
    bus.subscribe(UserSignedUp, seen.add)
    async with bus:
        for _ in range(2):
            with pytest.raises(ServiceUnavailable):
                await bus.publish(UserSignedUp(1, "a"))
        await bus.publish(UserSignedUp(2, "b"))
        await seen.until(lambda: 2 in seen.ids)
    assert seen.ids == Counter({2: 1}), "a publish that raised delivered nothing"
    assert faulty.count("drop_publishes") == 2


async def test_a_dropped_fetch_raises_and_the_next_fetch_carries_on() -> None:
    faulty = FaultyTransport(MemoryTransport(), drop_fetches=Times(1))
    await faulty.start()
    subscription = faulty.subscribe("orders", group="g")
    message = Message("order.placed", b"{}")
    await faulty.publish("orders", [message])
    batches = aiter(subscription)
    with pytest.raises(ServiceUnavailable):
        await anext(batches)
    (delivery,) = await anext(batches)
    assert delivery.message.id == message.id
    await delivery.ack()
    await faulty.aclose()
    assert faulty.count("drop_fetches") == 1


async def test_only_limits_message_faults_to_the_messages_it_accepts() -> None:
    faulty = FaultyTransport(
        MemoryTransport(), corrupt_payload=Chance(1.0), only=lambda m: m.key == "spoil"
    )
    seen = Seen()
    bus = Bus(faulty)
    bus.subscribe(UserSignedUp, seen.add)
    async with bus:
        spoiled = await bus.publish(UserSignedUp(1, "a"), key="spoil")
        await bus.publish(UserSignedUp(2, "b"), key="keep")
        await seen.until(lambda: 2 in seen.ids)
    assert faulty.ids("corrupt_payload") == [spoiled.id]
