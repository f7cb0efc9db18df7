"""The testing kit: the recorder, wait_for, inline mode, fixtures, sync facade."""

from __future__ import annotations

import asyncio
import threading

import pytest
from events import OrderPlaced, UserSignedUp

import tidings
from tidings import Bus
from tidings.sync import SyncBus
from tidings.testing import FakeClock, Recorder, wait_for


async def test_recorder_sees_every_way_of_publishing(
    tidings_bus: Bus, tidings_recorder: Recorder
) -> None:
    await tidings_bus.publish(UserSignedUp(1, "a"))
    await tidings_bus.publish_and_wait(UserSignedUp(2, "b"))
    tidings_bus.emit(OrderPlaced(3, "c"))
    await tidings_recorder.wait_for(UserSignedUp, count=2)
    tidings_recorder.assert_published(UserSignedUp, count=2)
    tidings_recorder.assert_published(OrderPlaced, count=1, where=lambda e: e.customer == "c")
    tidings_recorder.assert_not_published("member.deleted")
    with pytest.raises(AssertionError, match="expected 5 UserSignedUp, found 2"):
        tidings_recorder.assert_published(UserSignedUp, count=5)


async def test_recorder_wait_for_times_out_with_what_was_seen(tidings_recorder: Recorder) -> None:
    with pytest.raises(TimeoutError, match=r"waited 0\.01s for 1 OrderPlaced"):
        await tidings_recorder.wait_for(OrderPlaced, timeout=0.01)


async def test_wait_for_returns_the_next_matching_event(tidings_bus: Bus) -> None:
    async def publish_later() -> None:
        await asyncio.sleep(0)
        await tidings_bus.publish(UserSignedUp(1, "skip"))
        await tidings_bus.publish(UserSignedUp(2, "this"))

    publishing = asyncio.ensure_future(publish_later())
    event = await wait_for(tidings_bus, UserSignedUp, where=lambda e: e.email == "this", timeout=5)
    await publishing
    assert event == UserSignedUp(2, "this")
    with pytest.raises(TimeoutError, match="no UserSignedUp within"):
        await wait_for(tidings_bus, UserSignedUp, timeout=0.01)


async def test_inline_mode_runs_handlers_in_subscription_order(tidings_inline_bus: Bus) -> None:
    order: list[str] = []

    async def first(event: UserSignedUp) -> None:
        await asyncio.sleep(0)
        order.append("first")

    def second(event: UserSignedUp) -> None:
        order.append("second")

    tidings_inline_bus.subscribe(UserSignedUp, first)
    tidings_inline_bus.subscribe(UserSignedUp, second)
    await tidings_inline_bus.publish(UserSignedUp(1, "x"))
    assert order == ["first", "second"]  # done before publish returned
    result = await tidings_inline_bus.publish_and_wait(UserSignedUp(2, "x"))
    assert result.ok
    assert order == ["first", "second", "first", "second"]


def test_fake_clock_records_sleeps(tidings_clock: FakeClock) -> None:
    start = tidings_clock.now()
    asyncio.run(tidings_clock.sleep(2.5))
    tidings_clock.advance(1)
    assert tidings_clock.sleeps == [2.5]
    assert tidings_clock.now() == start + 3.5


def test_sync_facade_serves_code_that_is_not_async() -> None:
    bus = Bus()
    seen: list[tuple[int, str]] = []
    bus.subscribe(UserSignedUp, lambda e: seen.append((e.user_id, threading.current_thread().name)))
    with SyncBus(bus) as sync_bus:
        sync_bus.publish(UserSignedUp(1, "x"))
        result = sync_bus.publish_and_wait(UserSignedUp(2, "x"))
        sync_bus.drain()
    assert result.ok
    assert sorted(n for n, _ in seen) == [1, 2]
    assert all(thread == "tidings sync bus" for _, thread in seen)


async def test_sync_facade_refuses_a_running_loop() -> None:
    with pytest.raises(tidings.SyncInAsyncError, match="running event loop"):
        SyncBus(Bus()).__enter__()


def test_sync_facade_must_be_open() -> None:
    with pytest.raises(tidings.ClosedError, match="with"):
        SyncBus(Bus()).publish(UserSignedUp(1, "x"))


def test_public_api_is_sorted_and_importable() -> None:
    assert tidings.__all__ == sorted(tidings.__all__)
    for name in tidings.__all__:
        assert getattr(tidings, name) is not None
