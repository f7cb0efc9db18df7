"""Bounded channels, worker pools, ordering, draining and timeouts."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from events import OrderPlaced, UserSignedUp

import tidings
from tidings import Bus


async def test_a_producer_blocks_on_a_full_channel_and_resumes() -> None:
    bus = Bus(capacity=4)
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(event: UserSignedUp) -> None:
        await release.wait()
        handled.append(event.user_id)

    bus.subscribe(UserSignedUp, slow)
    async with bus:
        # the worker holds one message, the fetch buffer and channel fill up behind it
        accepted = 0
        producer_blocked = asyncio.Event()

        async def produce() -> None:
            nonlocal accepted
            for n in range(5000):
                publish = asyncio.ensure_future(bus.publish(UserSignedUp(n, "x")))
                done, _ = await asyncio.wait({publish}, timeout=0)
                if not done:
                    producer_blocked.set()
                await publish
                accepted += 1

        producing = asyncio.ensure_future(produce())
        await asyncio.wait_for(producer_blocked.wait(), 5)
        blocked_at = accepted
        assert blocked_at < 5000
        with pytest.raises(tidings.QueueFull):
            bus.publish_nowait(UserSignedUp(-1, "x"))
        release.set()
        await asyncio.wait_for(producing, 30)
    assert accepted == 5000
    assert sorted(handled) == list(range(5000))


async def test_publish_nowait_queues_when_there_is_room() -> None:
    bus = Bus(capacity=10)
    seen: list[int] = []
    bus.subscribe(UserSignedUp, lambda e: seen.append(e.user_id))
    async with bus:
        for n in range(5):
            bus.publish_nowait(UserSignedUp(n, "x"))
    assert seen == list(range(5))


async def test_closing_drains_every_accepted_event() -> None:
    bus = Bus(capacity=256)
    handled: list[int] = []

    async def handler(event: UserSignedUp) -> None:
        if event.user_id % 100 == 0:
            await asyncio.sleep(0)
        handled.append(event.user_id)

    bus.subscribe(UserSignedUp, handler, concurrency=8)
    async with bus:
        for n in range(10_000):
            await bus.publish(UserSignedUp(n, "x"))
    assert sorted(handled) == list(range(10_000))


async def test_a_close_timeout_reports_unhandled_events_as_dead_letters() -> None:
    started = asyncio.Event()

    async def stuck(event: UserSignedUp) -> None:
        started.set()
        await asyncio.Event().wait()

    bus = Bus(capacity=500)
    bus.subscribe(UserSignedUp, stuck, group="stuck")
    await bus.start()
    for n in range(501):  # the capacity, and the one in flight
        await bus.publish(UserSignedUp(n, "x"))
    await started.wait()
    await bus.aclose(timeout=0.05)
    letters = await bus.dead_letters.list(limit=10_000)
    assert len(letters) == 501  # the one in flight, the fetched ones, the queued ones
    assert all(letter.error_type.endswith("NotHandled") for letter in letters)
    assert all(letter.group == "stuck" for letter in letters)


@pytest.mark.parametrize("concurrency", [1, 3, 16])
async def test_the_concurrency_limit_is_never_exceeded(concurrency: int) -> None:
    bus = Bus()
    running = 0
    peak = 0

    async def handler(event: UserSignedUp) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(event.user_id % 4):
            await asyncio.sleep(0)
        running -= 1

    bus.subscribe(UserSignedUp, handler, concurrency=concurrency)
    async with bus:
        for n in range(500):
            await bus.publish(UserSignedUp(n, "x"))
    assert peak == concurrency


async def test_per_key_ordering_keeps_each_key_in_order_and_keys_in_parallel() -> None:
    bus = Bus()
    seen: dict[str, list[int]] = defaultdict(list)
    running_keys: set[str] = set()
    overlap = 0

    async def handler(event: OrderPlaced) -> None:
        nonlocal overlap
        assert event.customer not in running_keys, "two messages of one key at once"
        running_keys.add(event.customer)
        overlap = max(overlap, len(running_keys))
        for _ in range(event.order_id % 3):
            await asyncio.sleep(0)
        seen[event.customer].append(event.order_id)
        running_keys.discard(event.customer)

    bus.subscribe(OrderPlaced, handler, concurrency=8, ordered=True)
    async with bus:
        for n in range(800):
            customer = f"c{n % 16}"
            await bus.publish(OrderPlaced(n, customer), key=customer)
    assert set(seen) == {f"c{k}" for k in range(16)}
    for ids in seen.values():
        assert ids == sorted(ids)
    assert overlap > 1, "different keys ran in parallel"


async def test_handler_timeout_fails_the_call() -> None:
    bus = Bus()

    async def slow(event: UserSignedUp) -> None:
        await asyncio.Event().wait()

    bus.subscribe(UserSignedUp, slow, timeout=0.01, name="slow")
    result = await bus.publish_and_wait(UserSignedUp(1, "x"))
    (outcome,) = result.outcomes
    assert isinstance(outcome.error, tidings.HandlerTimeout)
    assert "slow" in str(outcome.error)


async def test_cancelling_a_publish_and_wait_cancels_its_handlers() -> None:
    bus = Bus()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(event: UserSignedUp) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe(UserSignedUp, slow)
    waiting = asyncio.ensure_future(bus.publish_and_wait(UserSignedUp(1, "x")))
    await started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_batch_handlers_receive_queued_events_in_batches() -> None:
    bus = Bus()
    batches: list[list[int]] = []

    async def store_all(events: list[UserSignedUp]) -> None:
        batches.append([e.user_id for e in events])

    bus.subscribe(UserSignedUp, store_all, batch_size=50)
    async with bus:
        for n in range(500):
            await bus.publish(UserSignedUp(n, "x"))
        await bus.drain()
        assert [n for batch in batches for n in batch] == list(range(500))
        assert max(map(len, batches)) == 50
        assert len(batches) < 500
        one = await bus.publish_and_wait(UserSignedUp(1000, "x"))
    assert one.ok
    assert batches[-1] == [1000]


async def test_a_failing_batch_is_retried_and_dead_lettered_per_message() -> None:
    from tidings.testing import FakeClock

    bus = Bus(clock=FakeClock())
    calls: list[list[int]] = []

    def refuse_odd(events: list[UserSignedUp]) -> None:
        calls.append([e.user_id for e in events])
        if any(e.user_id % 2 for e in events):
            raise ValueError("odd one in the batch")

    bus.subscribe(UserSignedUp, refuse_odd, retry=tidings.Retry(max_attempts=2), batch_size=10)
    async with bus:
        await bus.publish(UserSignedUp(1, "x"))
        await bus.publish(tidings.Message("member.signed_up", b"not json"))
        await bus.drain()
    letters = await bus.dead_letters.list()
    assert sorted(letter.error_type.rsplit(".", 1)[-1] for letter in letters) == [
        "DecodeError",
        "ValueError",
    ]
    assert all(1 in call for call in calls)


def test_batch_handlers_refuse_what_would_break_them() -> None:
    def handler(events: list[UserSignedUp]) -> None:
        pass

    with pytest.raises(ValueError, match="concurrency=1"):
        Bus().subscribe(UserSignedUp, handler, ordered=True, concurrency=2)
    with pytest.raises(ValueError, match="middleware"):
        Bus().subscribe(UserSignedUp, handler, middleware=[lambda h: h])
