"""``bus.outcomes()``: the final fate of every message the consumers handle, once each."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import Counter

import pytest
from events import OrderPlaced, UserSignedUp

import tidings
from tidings import Bus, Failed, Handled, Missed, Undecodable
from tidings.testing import FakeClock

RETRY = tidings.Retry(max_attempts=3, initial_delay=0.5, jitter=False)


async def settled(stream: tidings.OutcomeStream) -> list[tidings.FinalOutcome]:
    """Every outcome until the stream ends; none may have been missed."""
    outcomes: list[tidings.FinalOutcome] = []
    async for item in stream:
        assert not isinstance(item, Missed), item
        outcomes.append(item)
    return outcomes


class Failing:
    """Fails user ``n`` on its first ``n % 4`` calls: 0 handled at once, 1 and 2 after retries,
    3 never (dead-lettered after three attempts)."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()

    async def __call__(self, event: UserSignedUp) -> None:
        self.calls[event.user_id] += 1
        if self.calls[event.user_id] <= event.user_id % 4:
            raise ValueError(f"user {event.user_id} fails")


async def test_each_message_is_reported_once_with_its_attempts() -> None:
    bus = Bus(clock=FakeClock())
    bus.subscribe(UserSignedUp, Failing(), group="mailer", name="mail", retry=RETRY)
    stream = bus.outcomes()
    async with bus:
        sent = {(await bus.publish(UserSignedUp(n, "x"))).id: n for n in range(40)}
    outcomes = await settled(stream)  # it ends when the bus closes
    assert sorted(o.message.id for o in outcomes) == sorted(sent)
    letters = {letter.id: letter for letter in await bus.dead_letters.list()}
    for outcome in outcomes:
        n = sent[outcome.message.id]
        assert (outcome.route, outcome.group, outcome.topic) == (
            "mail",
            "mailer",
            "member.signed_up",
        )
        assert outcome.message.type == "member.signed_up"
        if n % 4 == 3:
            assert isinstance(outcome, Failed)
            assert not isinstance(outcome, Undecodable)
            assert outcome.attempts == 3
            assert (outcome.error_type, outcome.error_message) == (
                "builtins.ValueError",
                f"user {n} fails",
            )
            assert letters[outcome.dead_letter_id].message_id == outcome.message.id
        else:
            assert isinstance(outcome, Handled)
            assert outcome.attempts == n % 4 + 1
        assert outcome.duration >= 0.0


async def test_ordered_retries_in_place_are_reported_once() -> None:
    bus = Bus(clock=FakeClock())
    bus.subscribe(UserSignedUp, Failing(), ordered=True, concurrency=4, retry=RETRY)
    stream = bus.outcomes()
    async with bus:
        for n in range(20):
            await bus.publish(UserSignedUp(n, "x"), key=f"k{n % 3}")
    outcomes = await settled(stream)
    assert len(outcomes) == 20
    assert Counter(type(o).__name__ for o in outcomes) == {"Handled": 15, "Failed": 5}
    assert sorted(o.attempts for o in outcomes) == sorted(min(n % 4 + 1, 3) for n in range(20))


async def test_garbage_is_reported_undecodable() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None, retry=RETRY)
    stream = bus.outcomes()
    async with bus:
        bad = await bus.publish(tidings.Message("member.signed_up", b'{"user_id": "nine"'))
    (outcome,) = await settled(stream)
    assert isinstance(outcome, Undecodable)
    assert isinstance(outcome, Failed)
    assert outcome.message.id == bad.id
    assert outcome.attempts == 1
    assert outcome.error_type == "tidings.errors.DecodeError"
    (letter,) = await bus.dead_letters.list()
    assert letter.id == outcome.dead_letter_id


async def test_a_batch_handler_reports_each_message() -> None:
    bus = Bus()

    def handle(events: list[UserSignedUp]) -> None:
        if any(event.user_id == 3 for event in events):
            raise ValueError("3 spoils its batch")

    bus.subscribe(UserSignedUp, handle, batch_size=2)
    stream = bus.outcomes()
    messages = [bus.message(UserSignedUp(n, "x")) for n in range(6)]
    sent = {message.id: n for n, message in enumerate(messages)}
    async with bus:
        await bus.publish_many(messages)
    outcomes = {outcome.message.id: outcome for outcome in await settled(stream)}
    assert len(outcomes) == 6
    failed = [sent[i] for i, o in outcomes.items() if isinstance(o, Failed)]
    assert 3 in failed
    assert len(failed) <= 2, "only the batch holding 3 fails"
    assert all(o.attempts == 1 for o in outcomes.values())


async def test_filters_by_route_group_and_topic() -> None:
    bus = Bus()
    mail = bus.subscribe(UserSignedUp, lambda event: None, group="mailer")
    bus.subscribe("member.*", lambda event: None, group="audit", name="audit")
    bus.subscribe(OrderPlaced, lambda event: None, group="audit", name="orders")
    everything = bus.outcomes()
    by_route, by_name = bus.outcomes(route=mail), bus.outcomes(route="orders")
    by_group, by_topic = bus.outcomes(group="audit"), bus.outcomes(topic="member.>")
    async with bus:
        await bus.publish(UserSignedUp(1, "x"))
        await bus.publish(OrderPlaced(2, "y"))

    async def seen(stream: tidings.OutcomeStream) -> list[tuple[str, str]]:
        return sorted((o.route, o.topic) for o in await settled(stream))

    member, order = (mail.name, "member.signed_up"), ("orders", "order.placed")
    audit = ("audit", "member.signed_up")
    assert await seen(everything) == sorted([audit, member, order])
    assert await seen(by_route) == [member]
    assert await seen(by_name) == [order]
    assert await seen(by_group) == sorted([audit, order])
    assert await seen(by_topic) == sorted([audit, member])


async def test_several_readers_each_get_every_outcome() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None)
    first, second = bus.outcomes(), bus.outcomes()
    async with bus:
        for n in range(10):
            await bus.publish(UserSignedUp(n, "x"))
    assert len([o async for o in first]) == len([o async for o in second]) == 10


async def test_a_slow_reader_loses_the_oldest_and_is_told_how_many() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None)
    stream = bus.outcomes(maxsize=3)
    async with bus:
        sent = [(await bus.publish(UserSignedUp(n, "x"))).id for n in range(10)]
    items = [item async for item in stream]
    assert items[0] == Missed(7)
    assert [o.message.id for o in items[1:] if isinstance(o, Handled)] == sent[7:]
    assert len(items) == 4
    assert stream.missed == 7


async def test_a_reader_that_keeps_up_misses_nothing() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None, concurrency=4)
    stream = bus.outcomes(maxsize=1)
    got: list[object] = []
    took = asyncio.Event()

    async def read() -> None:
        async for item in stream:
            got.append(item)
            took.set()

    reading = asyncio.create_task(read())
    async with bus:
        for n in range(50):
            took.clear()
            await bus.publish(UserSignedUp(n, "x"))
            await took.wait()
    await reading
    assert len(got) == 50
    assert all(isinstance(item, Handled) for item in got)
    assert stream.missed == 0


async def test_a_waiting_reader_ends_when_the_bus_closes() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None)
    stream = bus.outcomes()
    started = asyncio.Event()

    async def read() -> list[object]:
        started.set()
        return [item async for item in stream]

    async with bus:
        reading = asyncio.create_task(read())
        await started.wait()
        await bus.publish(UserSignedUp(1, "x"))
    assert len(await reading) == 1
    late = bus.outcomes()
    assert [item async for item in late] == [], "a stream opened after close ends at once"


async def test_a_closed_stream_ends_and_gets_nothing_more() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None)
    async with bus:
        async with bus.outcomes() as stream:
            await bus.publish(UserSignedUp(1, "x"))
            await bus.drain()
        await bus.publish(UserSignedUp(2, "x"))
        await bus.drain()
        assert [item async for item in stream] == []


async def test_closing_a_stream_ends_a_reader_waiting_on_it() -> None:
    bus = Bus()
    async with bus:
        stream = bus.outcomes()
        reading = asyncio.create_task(anext(stream, None))
        await asyncio.sleep(0)  # let the reader start waiting
        await stream.aclose()
        assert await reading is None


async def test_a_cancelled_read_loses_nothing() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None)
    async with bus:
        stream = bus.outcomes()
        waiting = asyncio.create_task(anext(stream))
        await asyncio.sleep(0)  # let the reader start waiting
        waiting.cancel()
        await bus.publish(UserSignedUp(1, "x"))
    assert len(await settled(stream)) == 1


async def test_a_stream_nobody_holds_is_let_go() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None)
    async with bus:
        stream = bus.outcomes()
        gone = weakref.ref(stream)
        del stream
        gc.collect()
        assert gone() is None, "the bus holds streams weakly"
        await bus.publish(UserSignedUp(1, "x"))  # reports to nobody, and does not fail


async def test_messages_kept_unhandled_at_close_are_reported_failed() -> None:
    bus = Bus()
    release = asyncio.Event()
    started = asyncio.Event()

    async def stuck(event: UserSignedUp) -> None:
        started.set()
        await release.wait()

    bus.subscribe(UserSignedUp, stuck, name="stuck")
    stream = bus.outcomes()
    await bus.start()
    for n in range(3):
        await bus.publish(UserSignedUp(n, "x"))
    await started.wait()
    await bus.aclose(timeout=0)
    outcomes = await settled(stream)
    assert len(outcomes) == 3
    assert all(
        isinstance(o, Failed) and o.error_type == "tidings.errors.NotHandled" for o in outcomes
    )
    assert {o.route for o in outcomes} == {"stuck"}
    assert len(await bus.dead_letters.list()) == 3


async def test_publish_and_wait_reports_through_its_result_not_the_stream() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda event: None)
    stream = bus.outcomes()
    async with bus:
        result = await bus.publish_and_wait(UserSignedUp(1, "x"))
    assert result.ok
    assert [item async for item in stream] == []


def test_bad_arguments_are_refused() -> None:
    bus = Bus()
    with pytest.raises(ValueError, match="maxsize"):
        bus.outcomes(maxsize=0)
    with pytest.raises(ValueError, match="wildcards"):
        bus.outcomes(topic="member.sign*")
