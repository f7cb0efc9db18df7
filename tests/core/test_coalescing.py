"""Publishes to one topic that overlap go to the transport in one call; each caller still
learns what became of its own message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tidings.coalescing import MAX_BATCH, Coalescer
from tidings.errors import ServiceUnavailable
from tidings.message import Message


class Gate:
    """A transport call that waits until released, and records each call's messages."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.open = asyncio.Event()
        self.fail: Exception | None = None

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        self.calls.append([m.data for m in messages])
        await self.open.wait()
        if self.fail is not None:
            raise self.fail


async def test_a_lone_publish_goes_at_once_and_overlapping_ones_go_together() -> None:
    gate = Gate()
    coalescer = Coalescer(gate.publish)
    first = asyncio.ensure_future(coalescer.send("t", Message("x", "0")))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(coalescer.send("t", Message("x", str(n)))) for n in (1, 2, 3)]
    await asyncio.sleep(0)
    assert gate.calls == [["0"]]
    assert not any(task.done() for task in (first, *rest))
    gate.open.set()
    await asyncio.gather(first, *rest)
    assert gate.calls == [["0"], ["1", "2", "3"]]


async def test_topics_do_not_wait_for_each_other() -> None:
    gate = Gate()
    coalescer = Coalescer(gate.publish)
    waiting = asyncio.ensure_future(coalescer.send("a", Message("x", "a")))
    await asyncio.sleep(0)
    other = asyncio.ensure_future(coalescer.send("b", Message("x", "b")))
    await asyncio.sleep(0)
    assert gate.calls == [["a"], ["b"]]
    gate.open.set()
    await asyncio.gather(waiting, other)


async def test_every_caller_of_a_failed_call_gets_its_error_and_later_ones_go_on() -> None:
    gate = Gate()
    coalescer = Coalescer(gate.publish)
    first = asyncio.ensure_future(coalescer.send("t", Message("x", "0")))
    await asyncio.sleep(0)
    batch = [asyncio.ensure_future(coalescer.send("t", Message("x", str(n)))) for n in (1, 2)]
    await asyncio.sleep(0)
    gate.fail = ServiceUnavailable("down")
    gate.open.set()
    results = await asyncio.gather(first, *batch, return_exceptions=True)
    assert all(isinstance(r, ServiceUnavailable) for r in results)
    gate.fail = None
    await coalescer.send("t", Message("x", "later"))
    assert gate.calls[-1] == ["later"]


async def test_a_caller_cancelled_while_waiting_takes_its_message_out() -> None:
    gate = Gate()
    coalescer = Coalescer(gate.publish)
    first = asyncio.ensure_future(coalescer.send("t", Message("x", "0")))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(coalescer.send("t", Message("x", "gone")))
    kept = asyncio.ensure_future(coalescer.send("t", Message("x", "kept")))
    await asyncio.sleep(0)
    gone.cancel()
    gate.open.set()
    await asyncio.gather(first, kept)
    assert gate.calls == [["0"], ["kept"]]
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_one_call_carries_at_most_max_batch() -> None:
    gate = Gate()
    coalescer = Coalescer(gate.publish)
    first = asyncio.ensure_future(coalescer.send("t", Message("x", "first")))
    await asyncio.sleep(0)
    many = [
        asyncio.ensure_future(coalescer.send("t", Message("x", str(n))))
        for n in range(MAX_BATCH + 5)
    ]
    await asyncio.sleep(0)
    gate.open.set()
    await asyncio.gather(first, *many)
    assert [len(call) for call in gate.calls] == [1, MAX_BATCH, 5]


async def test_tasks_publishing_in_a_loop_all_join_the_next_batch() -> None:
    sizes: list[int] = []

    async def publish(topic: str, messages: Sequence[Message]) -> None:
        sizes.append(len(messages))
        await asyncio.sleep(0)  # the broker's round trip

    coalescer = Coalescer(publish)

    async def publisher(n: int) -> None:
        for i in range(3):
            await coalescer.send("t", Message("x", f"{n}-{i}"))

    await asyncio.gather(*(publisher(n) for n in range(4)))
    # The first goes alone; then each call carries every Task the previous one released.
    assert sizes == [1, 4, 4, 3]
