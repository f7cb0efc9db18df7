"""B2: 200,000 events to 3 async handlers with publish_and_wait.

The limit awaits the three handlers one after another (no concurrency at all). tidings starts
them eagerly and only pays for a Task when a handler really suspends, so handlers that wait on I/O
still overlap: the last row shows three handlers that each sleep 10 ms finishing together.
Run: ``python -m bench.b2_async [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import tidings
from bench.common import Row, best_of_async, print_table

AsyncHandler = Callable[[Any], Awaitable[None]]


@tidings.event("bench.b2.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    n: int


def _handlers() -> tuple[list[int], list[AsyncHandler]]:
    seen = [0]

    async def a(event: Any) -> None:
        seen[0] += 1

    async def b(event: Any) -> None:
        seen[0] += 1

    async def c(event: Any) -> None:
        seen[0] += 1

    return seen, [a, b, c]


class Sequential:
    def __init__(self, handlers: list[AsyncHandler]) -> None:
        self.handlers = handlers

    async def publish(self, event: Any) -> None:
        for handler in self.handlers:
            await handler(event)


async def run_limit(n: int) -> int:
    seen, handlers = _handlers()
    publish = Sequential(handlers).publish
    event = Ping(1)
    for _ in range(n):
        await publish(event)
    assert seen[0] == 3 * n
    return n


async def run_tidings(n: int) -> int:
    seen, handlers = _handlers()
    bus = tidings.Bus()
    for h in handlers:
        bus.subscribe(Ping, h)
    event = Ping(1)
    publish = bus.publish_and_wait
    for _ in range(n):
        await publish(event)
    assert seen[0] == 3 * n
    return n


async def run_gather(n: int) -> int:
    seen, handlers = _handlers()
    event = Ping(1)
    for _ in range(n):
        await asyncio.gather(*(h(event) for h in handlers))
    assert seen[0] == 3 * n
    return n


async def run_pyee(n: int) -> int:
    from pyee.asyncio import AsyncIOEventEmitter

    seen, handlers = _handlers()
    ee = AsyncIOEventEmitter()
    for h in handlers:
        ee.on("ping", h)
    event = Ping(1)
    for _ in range(n):
        ee.emit("ping", event)  # schedules a Task per handler and returns
        await ee.wait_for_complete()
    assert seen[0] == 3 * n
    return n


async def run_bubus(n: int) -> int:
    from bubus import BaseEvent, EventBus

    class BubusPing(BaseEvent[None]):  # type: ignore[misc]  # untyped library
        n: int

    seen, handlers = _handlers()
    bus = EventBus(parallel_handlers=True, max_history_size=100)
    for h in handlers:
        bus.on(BubusPing, h)
    for i in range(n):
        await bus.dispatch(BubusPing(n=i))
    await bus.stop(clear=True)
    assert seen[0] == 3 * n, seen
    return n


async def overlap_check() -> float:
    """Seconds for one publish_and_wait to three handlers that each sleep 10 ms."""
    bus = tidings.Bus()

    async def slow(event: Any) -> None:
        await asyncio.sleep(0.01)

    for _ in range(3):
        bus.subscribe(Ping, slow, name=f"slow{_}")
    await bus.publish_and_wait(Ping(0))  # the first call also looks for OpenTelemetry (imports)
    started = time.perf_counter()
    await bus.publish_and_wait(Ping(1))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    small = 500 if args.quick else 2_000
    overlap = asyncio.run(overlap_check())
    rows = [
        Row("limit: sequential await", *best_of_async(lambda: run_limit(n))),
        Row(
            "tidings publish_and_wait",
            *best_of_async(lambda: run_tidings(n)),
            f"3 x 10 ms handlers took {overlap * 1000:.1f} ms",
        ),
        Row("asyncio.gather", *best_of_async(lambda: run_gather(n))),
        Row("pyee AsyncIOEventEmitter", *best_of_async(lambda: run_pyee(n))),
        Row("bubus EventBus", *best_of_async(lambda: run_bubus(small), repeat=1)),
    ]
    return print_table(
        f"B2: {n:,} events to 3 async handlers, publish and wait (target >= 1,000,000/s)",
        rows,
        rows[0].name,
        args.json,
    )


if __name__ == "__main__":
    main()
