"""``tidings.current()``: a handler knows its message, its attempt and its route."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

import tidings
from tidings import Bus, Current, Retry


@tidings.event("current.thing")
@dataclass(frozen=True)
class Thing:
    n: int


FAST = Retry(max_attempts=3, initial_delay=0.0, jitter=False)


async def test_outside_a_handler_there_is_none() -> None:
    assert tidings.current() is None


async def test_a_queued_handler_sees_each_attempt_and_its_route() -> None:
    bus = Bus()
    seen: list[Current] = []
    done = asyncio.Event()

    async def flaky(event: Thing) -> None:
        here = tidings.current()
        assert here is not None
        seen.append(here)
        if here.attempt < 3:
            raise RuntimeError("not yet")
        done.set()

    bus.subscribe(Thing, flaky, group="billing", name="flaky", retry=FAST)
    async with bus:
        message = await bus.publish(Thing(1))
        await done.wait()
    assert [c.attempt for c in seen] == [1, 2, 3]
    assert {(c.route, c.group, c.topic) for c in seen} == {("flaky", "billing", "current.thing")}
    assert {c.message.id for c in seen} == {message.id}


async def test_retries_in_place_count_too() -> None:
    bus = Bus()
    attempts: list[int] = []

    async def flaky(event: Thing) -> None:
        here = tidings.current()
        assert here is not None
        attempts.append(here.attempt)
        await asyncio.sleep(0)
        if here.attempt < 3:
            raise RuntimeError("not yet")

    bus.subscribe(Thing, flaky, retry=FAST)
    result = await bus.publish_and_wait(Thing(2))
    assert result.ok
    assert attempts == [1, 2, 3]


async def test_an_inline_handler_knows_where_it_is() -> None:
    bus = Bus()
    seen: list[Current | None] = []
    bus.subscribe("current.*", lambda event: seen.append(tidings.current()), name="inline")
    message = bus.message(Thing(3))
    await bus.publish_and_wait(message)
    (here,) = seen
    assert here is not None
    assert (here.message.id, here.attempt, here.route, here.topic) == (
        message.id,
        1,
        "inline",
        "current.thing",
    )
    assert tidings.current() is None  # restored after the call


async def test_a_task_started_by_a_handler_keeps_its_message() -> None:
    """What a background task of a handler publishes points back to the message it came from,
    even after the worker moved on to other messages."""
    bus = Bus()
    later: list[asyncio.Task[Current | None]] = []
    go = asyncio.Event()

    async def remember() -> Current | None:
        await go.wait()
        return tidings.current()

    async def handler(event: Thing) -> None:
        later.append(asyncio.create_task(remember()))

    bus.subscribe(Thing, handler)
    async with bus:
        first = await bus.publish(Thing(1))
        second = await bus.publish(Thing(2))
        await bus.drain()
        go.set()
        seen = await asyncio.gather(*later)
    assert [c.message.id if c else None for c in seen] == [first.id, second.id]


@pytest.mark.parametrize("batch", [False, True])
async def test_the_message_published_inside_points_back(batch: bool) -> None:
    bus = Bus()
    children: list[tidings.Message] = []

    @tidings.event("current.child")
    @dataclass(frozen=True)
    class Child:
        n: int

    async def parent(event: Thing) -> None:
        children.append(await bus.publish(Child(event.n)))

    async def parents(events: list[Thing]) -> None:
        for event in events:
            children.append(await bus.publish(Child(event.n)))

    bus.subscribe(Thing, parents if batch else parent)
    async with bus:
        message = await bus.publish(Thing(4))
        await bus.drain()
    (child,) = children
    assert child.headers[tidings.CAUSATION_ID] == message.id


async def test_an_inline_bus_tells_the_handler_where_it_is_and_links_what_it_publishes() -> None:
    bus = Bus(inline=True)
    seen: list[Current | None] = []
    children: list[tidings.Message] = []

    @bus.subscribe(Thing, name="first")
    async def first(thing: Thing) -> None:
        seen.append(tidings.current())
        if thing.n == 0:
            await bus.publish(Thing(1))

    @bus.subscribe("current.thing", group="watch")
    def watch(message: tidings.Message) -> None:
        children.append(message)

    async with bus:
        parent = await bus.publish(Thing(0))
    assert [(c.route, c.message.data) for c in seen if c] == [
        ("first", Thing(0)),
        ("first", Thing(1)),
    ]
    (child,) = [m for m in children if m.data == Thing(1)]
    assert child.headers[tidings.CAUSATION_ID] == parent.id
    assert tidings.current() is None
