"""Publishing and subscribing on the in-process bus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from events import OrderPlaced, UserDeleted, UserSignedUp

import tidings
from tidings import Bus, Message


async def test_handlers_receive_the_events_of_their_type() -> None:
    bus = Bus()
    got: list[Any] = []

    @bus.subscribe(UserSignedUp)
    async def welcome(event: UserSignedUp) -> None:
        got.append(("welcome", event))

    bus.subscribe(UserDeleted, lambda event: got.append(("deleted", event)))
    async with bus:
        await bus.publish(UserSignedUp(1, "a@example.com"))
        await bus.publish(UserDeleted(2))
    assert sorted(got, key=repr) == [
        ("deleted", UserDeleted(2)),
        ("welcome", UserSignedUp(1, "a@example.com")),
    ]


async def test_decorator_returns_the_function_unchanged() -> None:
    bus = Bus()

    @bus.subscribe(UserSignedUp)
    def handler(event: UserSignedUp) -> str:
        return "still callable"

    assert handler(UserSignedUp(1, "x")) == "still callable"


async def test_a_raising_handler_does_not_stop_its_siblings() -> None:
    bus = Bus()
    seen: list[str] = []

    def first(event: UserSignedUp) -> None:
        seen.append("first")

    def broken(event: UserSignedUp) -> None:
        raise RuntimeError("broken handler")

    async def last(event: UserSignedUp) -> None:
        seen.append("last")

    for handler in (first, broken, last):
        bus.subscribe(UserSignedUp, handler)
    async with bus:
        for n in range(3):
            await bus.publish(UserSignedUp(n, "x"))
    assert seen.count("first") == 3
    assert seen.count("last") == 3
    letters = await bus.dead_letters.list()
    assert len(letters) == 3
    assert {letter.error_message for letter in letters} == {"broken handler"}


async def test_publish_and_wait_reports_each_handlers_outcome() -> None:
    bus = Bus()

    def ok(event: UserSignedUp) -> None:
        pass

    async def fails(event: UserSignedUp) -> None:
        raise ValueError("no such mailbox")

    async def fails_later(event: UserSignedUp) -> None:
        await asyncio.sleep(0)
        raise KeyError("profile")

    bus.subscribe(UserSignedUp, ok, name="ok")
    bus.subscribe(UserSignedUp, fails, name="fails")
    bus.subscribe(UserSignedUp, fails_later, name="fails_later")

    result = await bus.publish_and_wait(UserSignedUp(1, "x"))

    assert not result.ok
    outcomes = {o.handler: o.error for o in result.outcomes}
    assert outcomes["ok"] is None
    assert isinstance(outcomes["fails"], ValueError)
    assert isinstance(outcomes["fails_later"], KeyError)
    with pytest.raises(ExceptionGroup) as raised:
        result.raise_errors()
    assert len(raised.value.exceptions) == 2


async def test_publish_and_wait_runs_suspending_handlers_concurrently() -> None:
    bus = Bus()
    a_started = asyncio.Event()
    b_started = asyncio.Event()

    async def a(event: UserSignedUp) -> None:
        a_started.set()
        await b_started.wait()  # deadlocks unless b runs while a waits

    async def b(event: UserSignedUp) -> None:
        b_started.set()
        await a_started.wait()

    bus.subscribe(UserSignedUp, a)
    bus.subscribe(UserSignedUp, b)
    async with asyncio.timeout(5):
        result = await bus.publish_and_wait(UserSignedUp(1, "x"))
    assert result.ok
    assert len(result) == 2


async def test_publish_and_wait_without_subscribers_is_ok() -> None:
    result = await Bus().publish_and_wait(UserSignedUp(1, "x"))
    assert result.ok
    assert result.outcomes == []


async def test_emit_calls_sync_handlers_inline_in_subscription_order() -> None:
    bus = Bus()
    order: list[int] = []
    bus.subscribe(UserSignedUp, lambda e: order.append(1))
    bus.subscribe(UserSignedUp, lambda e: order.append(2))
    bus.subscribe("member.*", lambda e: order.append(3))
    bus.emit(UserSignedUp(1, "x"))
    assert order == [1, 2, 3]


async def test_emit_isolates_and_dead_letters_failures() -> None:
    bus = Bus()
    seen: list[int] = []

    def broken(event: UserSignedUp) -> None:
        raise RuntimeError("emit failure")

    bus.subscribe(UserSignedUp, broken)
    bus.subscribe(UserSignedUp, lambda e: seen.append(e.user_id))
    bus.emit(UserSignedUp(7, "x"))
    assert seen == [7]
    await bus.drain()
    (letter,) = await bus.dead_letters.list()
    assert letter.error_message == "emit failure"


async def test_same_function_on_two_routes_is_dead_lettered_per_route() -> None:
    bus = Bus()

    def broken(event: UserSignedUp) -> None:
        raise RuntimeError("twice")

    bus.subscribe(UserSignedUp, broken, group="one")
    bus.subscribe(UserSignedUp, broken, group="two")
    bus.emit(UserSignedUp(1, "x"))
    await bus.drain()
    assert sorted(d.group for d in await bus.dead_letters.list()) == ["one", "two"]


async def test_emit_starts_async_handlers_on_the_running_loop() -> None:
    bus = Bus()
    done = asyncio.Event()

    async def later(event: UserSignedUp) -> None:
        await asyncio.sleep(0)
        done.set()

    bus.subscribe(UserSignedUp, later)
    bus.emit(UserSignedUp(1, "x"))
    await asyncio.wait_for(done.wait(), 5)


async def test_handlers_can_take_the_whole_message() -> None:
    bus = Bus()
    got: list[Message] = []

    def envelope(message: Message) -> None:
        got.append(message)

    bus.subscribe(UserSignedUp, envelope)
    await bus.publish_and_wait(UserSignedUp(1, "x"), key="user-1", headers={"tenant": "a"})
    (message,) = got
    assert message.type == "member.signed_up"
    assert message.key == "user-1"
    assert message.headers["tenant"] == "a"
    assert message.data == UserSignedUp(1, "x")


async def test_unsubscribe_stops_delivery() -> None:
    bus = Bus()
    seen: list[int] = []
    route = bus.subscribe(UserSignedUp, lambda e: seen.append(e.user_id))
    await bus.publish_and_wait(UserSignedUp(1, "x"))
    bus.unsubscribe(route)
    await bus.publish_and_wait(UserSignedUp(2, "x"))
    bus.emit(UserSignedUp(3, "x"))
    assert seen == [1]


async def test_publish_on_a_bus_that_is_not_running_is_a_clear_error() -> None:
    bus = Bus()
    with pytest.raises(tidings.ClosedError, match="async with bus"):
        await bus.publish(UserSignedUp(1, "x"))


@pytest.mark.parametrize(
    ("pattern", "delivered"),
    [
        ("member.*", {"member.signed_up", "member.deleted"}),
        ("member.>", {"member.signed_up", "member.deleted", "member.profile.changed"}),
        ("*.placed", {"order.placed"}),
        (">", {"member.signed_up", "member.deleted", "member.profile.changed", "order.placed"}),
        ("member.signed_up", {"member.signed_up"}),
    ],
)
async def test_wildcard_subscriptions(pattern: str, delivered: set[str]) -> None:
    bus = Bus()
    seen: set[str] = set()

    def record(message: Message) -> None:
        seen.add(message.type)

    bus.subscribe(pattern, record)
    for event in (UserSignedUp(1, "x"), UserDeleted(1), OrderPlaced(1, "c")):
        await bus.publish_and_wait(event)
    await bus.publish_and_wait(Message("member.profile.changed", {"user_id": 1}))
    assert seen == delivered


async def test_events_published_in_a_handler_carry_correlation_and_causation() -> None:
    bus = Bus()
    messages: dict[str, Message] = {}

    async def signed_up(event: UserSignedUp) -> None:
        await asyncio.sleep(0)  # the causation survives a suspension
        await bus.publish_and_wait(OrderPlaced(1, event.email))

    async def placed(event: OrderPlaced) -> None:
        await bus.publish_and_wait(UserDeleted(9))

    def record(message: Message) -> None:
        messages[message.type] = message

    bus.subscribe(UserSignedUp, signed_up)
    bus.subscribe(OrderPlaced, placed)
    bus.subscribe(">", record)
    root = (await bus.publish_and_wait(UserSignedUp(1, "x"))).message
    child, grandchild = messages["order.placed"], messages["member.deleted"]
    assert child.headers[tidings.CAUSATION_ID] == root.id
    assert child.headers[tidings.CORRELATION_ID] == root.id
    assert grandchild.headers[tidings.CAUSATION_ID] == child.id
    assert grandchild.headers[tidings.CORRELATION_ID] == root.id
    assert tidings.CAUSATION_ID not in root.headers
    unrelated = bus.message(UserDeleted(2))
    assert tidings.CAUSATION_ID not in unrelated.headers


async def test_queued_handlers_also_link_what_they_publish() -> None:
    bus = Bus()
    children: list[Message] = []

    async def signed_up(event: UserSignedUp) -> None:
        await asyncio.sleep(0)
        await bus.publish(OrderPlaced(1, event.email))

    def placed(message: Message) -> None:
        children.append(message)

    bus.subscribe(UserSignedUp, signed_up, concurrency=4)
    bus.subscribe(OrderPlaced, placed)
    async with bus:
        parents = [await bus.publish(UserSignedUp(n, f"{n}@x")) for n in range(10)]
        await bus.drain()
    by_email = {m.data.customer: m for m in children}
    for parent in parents:
        assert by_email[parent.data.email].headers[tidings.CAUSATION_ID] == parent.id
