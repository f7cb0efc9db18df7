"""Nothing accepted is lost in process: close with a timeout, cancelled publishes, handlers that
raise BaseException, unsubscribing a running route, the exact capacity bound.

Every case counts: accepted = handled + dead-lettered.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from events import OrderPlaced, UserSignedUp

import tidings
from tidings import Bus
from tidings.testing import wait_for
from tidings.testing.faults import FaultyTransport, Times
from tidings.transports.memory import MemoryTransport


async def _letters(bus: Bus) -> list[tidings.DeadLetter]:
    return await bus.dead_letters.list(limit=10_000)


@pytest.mark.parametrize(("count", "concurrency"), [(20, 1), (100, 4)])
async def test_close_with_timeout_dead_letters_every_message_not_handled(
    count: int, concurrency: int
) -> None:
    bus = Bus()
    handled: list[int] = []

    async def slow(event: UserSignedUp) -> None:
        await asyncio.sleep(0.05)
        handled.append(event.user_id)

    bus.subscribe(UserSignedUp, slow, concurrency=concurrency)
    await bus.start()
    for n in range(count):
        await bus.publish(UserSignedUp(n, "x"))
    await bus.aclose(timeout=0.12)
    letters = await _letters(bus)
    not_handled = sorted(int(letter.headers.get("n", -1)) for letter in letters)
    assert len(handled) + len(letters) == count, (len(handled), not_handled)
    assert {letter.error_type for letter in letters} <= {"tidings.errors.NotHandled"}


async def test_close_with_timeout_keeps_messages_waiting_for_a_retry() -> None:
    bus = Bus()
    called = asyncio.Event()

    async def failing(event: UserSignedUp) -> None:
        called.set()
        raise RuntimeError("down")

    bus.subscribe(UserSignedUp, failing, retry=tidings.Retry(max_attempts=5, initial_delay=30))
    await bus.start()
    await bus.publish(UserSignedUp(1, "x"))
    await called.wait()
    await bus.aclose(timeout=0.05)
    letters = await _letters(bus)
    assert [letter.message_id for letter in letters] != []
    assert letters[0].error_type == "tidings.errors.NotHandled"


class Stop(BaseException):
    """A handler's own BaseException subclass."""


@pytest.mark.parametrize("raised", [asyncio.CancelledError, Stop])
async def test_a_handler_raising_base_exception_loses_nothing(
    raised: type[BaseException],
) -> None:
    bus = Bus()
    handled: list[int] = []

    async def handler(event: UserSignedUp) -> None:
        if event.user_id == 3:
            raise raised()
        handled.append(event.user_id)

    bus.subscribe(UserSignedUp, handler)
    async with bus:
        for n in range(10):
            await bus.publish(UserSignedUp(n, "x"))
    letters = await _letters(bus)
    assert handled == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert len(letters) == 1
    assert raised.__name__ in letters[0].error_type


@pytest.mark.parametrize(
    ("raised", "status", "said"),
    [("KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt"), ("SystemExit(3)", 3, "")],
)
def test_keyboard_interrupt_in_a_handler_stops_the_process(
    raised: str, status: int, said: str
) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, tidings

        bus = tidings.Bus()

        @bus.subscribe("t")
        async def handler(event):
            raise {raised}

        async def main():
            async with bus:
                await bus.publish({{"a": 1}}, topic="t")
                await asyncio.sleep(30)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == status
    assert said in done.stderr
    assert "NotHandled" in done.stderr  # the message was given back, then kept as a dead letter


async def test_unsubscribe_stops_delivery_and_finishes_what_was_queued() -> None:
    bus = Bus(capacity=4)
    first: list[int] = []
    second: list[int] = []
    route = bus.subscribe(UserSignedUp, lambda e: first.append(e.user_id), group="a")
    bus.subscribe(UserSignedUp, lambda e: second.append(e.user_id), group="b")
    async with bus:
        for n in range(3):
            await bus.publish(UserSignedUp(n, "x"))
        bus.unsubscribe(route)
        for n in range(3, 50):  # more than the capacity: nothing may wait for the gone route
            await asyncio.wait_for(bus.publish(UserSignedUp(n, "x")), 5)
    assert first == [0, 1, 2]
    assert second == list(range(50))


async def test_wait_for_leaves_nothing_that_blocks_publishers(tidings_bus: Bus) -> None:
    waiting = asyncio.ensure_future(wait_for(tidings_bus, OrderPlaced))
    await asyncio.sleep(0)  # subscribed
    await tidings_bus.publish(OrderPlaced(0, "c"))
    assert (await waiting).order_id == 0
    await tidings_bus.drain()  # the temporary route is gone now
    for n in range(1, 2000):  # more than a channel holds: none may be left for the gone route
        await asyncio.wait_for(tidings_bus.publish(OrderPlaced(n, "c")), 5)


async def test_a_cancelled_publish_reaches_no_group() -> None:
    bus = Bus(capacity=1)
    release = asyncio.Event()
    seen: dict[str, list[int]] = {"fast": [], "slow": []}

    async def fast(event: UserSignedUp) -> None:
        seen["fast"].append(event.user_id)

    async def slow(event: UserSignedUp) -> None:
        await release.wait()
        seen["slow"].append(event.user_id)

    bus.subscribe(UserSignedUp, fast)
    bus.subscribe(UserSignedUp, slow, timeout=None, concurrency=1)  # one receiver, in order
    async with bus:
        accepted: list[int] = []
        cancelled = 0
        n = 0
        while cancelled < 3:  # until the slow group's channel is full (Go's Send(ctx))
            try:
                async with asyncio.timeout(0.005):
                    await bus.publish(UserSignedUp(n, "x"))
                accepted.append(n)
            except TimeoutError:
                cancelled += 1
            n += 1
        release.set()
    assert seen["slow"] == accepted
    assert seen["fast"] == accepted  # a publish the caller saw cancelled reached no group


async def test_capacity_is_the_exact_number_waiting() -> None:
    bus = Bus(capacity=3)
    release = asyncio.Event()

    async def slow(event: UserSignedUp) -> None:
        await release.wait()

    bus.subscribe(UserSignedUp, slow, concurrency=2)
    async with bus:
        accepted = 0
        while True:
            try:
                bus.publish_nowait(UserSignedUp(accepted, "x"))
            except tidings.QueueFull:
                break
            accepted += 1
            await asyncio.sleep(0)  # let the workers take what they can
        release.set()
    assert accepted == 3 + 2  # three waiting, two in the handlers


async def test_publish_and_wait_on_a_closed_bus_runs_no_handler(tmp_path: object) -> None:
    bus = Bus(f"sqlite:///{tmp_path}/x.db")
    ran: list[int] = []
    bus.subscribe(UserSignedUp, lambda e: ran.append(e.user_id))
    async with bus:
        pass
    with pytest.raises(tidings.ClosedError):
        await bus.publish_and_wait(UserSignedUp(1, "x"))
    assert ran == []


async def test_close_with_timeout_on_a_durable_transport_closes_it(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    bus = Bus(url)
    started = asyncio.Event()

    async def hangs(event: UserSignedUp) -> None:
        started.set()
        await asyncio.Event().wait()

    bus.subscribe(UserSignedUp, hangs, group="g", timeout=None)
    await bus.start()
    await bus.publish(UserSignedUp(1, "x"))
    await asyncio.wait_for(started.wait(), 5)
    await bus.aclose(timeout=0.1)  # returns; no CancelledError
    handled: list[int] = []
    came_again = asyncio.Event()

    def handle(event: UserSignedUp) -> None:
        handled.append(event.user_id)
        came_again.set()

    again = Bus(url)
    again.subscribe(UserSignedUp, handle, group="g")
    async with again:
        await asyncio.wait_for(came_again.wait(), 10)  # given back: the group's next worker
    assert handled == [1]


async def test_a_hung_handler_times_out_by_default() -> None:
    bus = Bus(handler_timeout=0.05)
    handled: list[int] = []

    async def handler(event: UserSignedUp) -> None:
        if event.user_id == 0:
            await asyncio.Event().wait()
        handled.append(event.user_id)

    bus.subscribe(UserSignedUp, handler)
    async with bus:
        for n in range(3):
            await bus.publish(UserSignedUp(n, "x"))
    letters = await _letters(bus)
    assert handled == [1, 2]
    assert [letter.error_type for letter in letters] == ["tidings.errors.HandlerTimeout"]


async def test_no_timeout_when_asked_for_none() -> None:
    bus = Bus(handler_timeout=0.01)
    release = asyncio.Event()
    handled: list[int] = []

    async def handler(event: UserSignedUp) -> None:
        await release.wait()
        handled.append(event.user_id)

    bus.subscribe(UserSignedUp, handler, timeout=None)
    async with bus:
        await bus.publish(UserSignedUp(1, "x"))
        await asyncio.sleep(0.05)  # longer than the bus default: this route has none
        release.set()
    assert handled == [1]
    assert await _letters(bus) == []


@pytest.mark.parametrize("durable", [False, True])
async def test_a_retried_message_keeps_its_place_in_its_key(durable: bool, tmp_path: Path) -> None:
    bus = Bus(f"sqlite:///{tmp_path}/x.db" if durable else None)
    seen: list[int] = []
    failed: set[int] = set()
    done = asyncio.Event()

    async def handler(event: UserSignedUp) -> None:
        if event.user_id % 3 == 0 and event.user_id not in failed:
            failed.add(event.user_id)
            raise RuntimeError("transient")
        seen.append(event.user_id)
        if len(seen) == 9:
            done.set()

    quick = tidings.Retry(max_attempts=3, initial_delay=0.01, jitter=False)
    bus.subscribe(UserSignedUp, handler, ordered=True, concurrency=4, retry=quick)
    async with bus:
        for n in range(9):
            await bus.publish(UserSignedUp(n, "x"), key="k")
        await asyncio.wait_for(done.wait(), 10)
    assert seen == list(range(9))


async def test_capacity_holds_for_messages_waiting_behind_their_key() -> None:
    bus = Bus(capacity=5)
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(event: UserSignedUp) -> None:
        started.set()
        await release.wait()

    bus.subscribe(UserSignedUp, slow, concurrency=2, ordered=True, timeout=None)
    async with bus:
        bus.publish_nowait(UserSignedUp(0, "x"), key="k")
        await started.wait()
        accepted = 1
        with pytest.raises(tidings.QueueFull):  # noqa: PT012  # counts what fits first
            for n in range(1, 100):
                bus.publish_nowait(UserSignedUp(n, "x"), key="k")
                accepted += 1
                await asyncio.sleep(0)  # the consumer fetches and parks what it can
        release.set()
    assert accepted == 1 + 5  # one running, five waiting behind it


async def _hang(event: UserSignedUp) -> None:
    await asyncio.Event().wait()


async def test_a_second_close_cuts_the_first_short_and_loses_nothing() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, _hang, timeout=None)
    await bus.start()
    for n in range(5):
        await bus.publish(UserSignedUp(n, "x"))
    first = asyncio.ensure_future(bus.aclose())  # waits for handlers that never finish
    await asyncio.sleep(0)
    await asyncio.wait_for(bus.aclose(timeout=0.1), 5)
    assert first.done()
    letters = await _letters(bus)
    assert sorted(letter.error_type for letter in letters) == ["tidings.errors.NotHandled"] * 5


async def test_close_with_timeout_after_unsubscribe_keeps_its_timeout() -> None:
    bus = Bus()
    route = bus.subscribe(UserSignedUp, _hang, timeout=None)
    await bus.start()
    for n in range(3):
        await bus.publish(UserSignedUp(n, "x"))
    await asyncio.sleep(0)
    bus.unsubscribe(route)  # its queued messages are still to be handled: they hang
    await asyncio.wait_for(bus.aclose(timeout=0.1), 5)
    assert len(await _letters(bus)) == 3


async def test_close_of_a_bus_whose_consumer_failed_keeps_what_it_accepted() -> None:
    outage = FaultyTransport(MemoryTransport(), drop_fetches=Times(1_000))
    bus = Bus(outage, restart=tidings.Retry(max_attempts=2, initial_delay=0.001))
    bus.subscribe(UserSignedUp, lambda e: None)
    await bus.start()
    for n in range(10):
        await bus.publish(UserSignedUp(n, "x"))
    await asyncio.wait_for(bus.consumer_failed(), 5)
    await asyncio.wait_for(bus.aclose(), 5)  # no drain can finish: nothing waits for one
    assert len(await _letters(bus)) == 10


class Refused(BaseException):
    """A handler's own BaseException."""


def _refuse(event: UserSignedUp) -> None:
    raise Refused


async def _cancel_itself(event: UserSignedUp) -> None:
    await asyncio.sleep(0)
    raise asyncio.CancelledError


@pytest.mark.parametrize("bad", [_refuse, _cancel_itself])
async def test_publish_and_wait_isolates_a_handler_raising_base_exception(
    bad: Callable[[UserSignedUp], object],
) -> None:
    bus = Bus()
    later: list[int] = []
    bus.subscribe(UserSignedUp, bad, group="bad")
    bus.subscribe(UserSignedUp, lambda e: later.append(e.user_id), group="later")
    async with bus:
        result = await bus.publish_and_wait(UserSignedUp(1, "x"))
        bus.emit(UserSignedUp(2, "x"))
        await bus.drain()
    assert later == [1, 2]
    assert not result.ok
    assert len(await _letters(bus)) == 2
