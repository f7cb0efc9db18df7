"""B3: a bounded pipeline: publish into a channel, 4 workers handle.

The limit is a raw ``asyncio.Queue(1024)`` with 4 worker tasks. tidings is ``Bus()`` with a route
of ``concurrency=4`` on the in-process transport (channel capacity 1024, backpressure on publish).
A third row reads every message's outcome (``bus.outcomes()``) meanwhile: what watching costs.
A second workload measures overlap: 20,000 events whose handler waits 1 ms, on 100 workers;
efficiency = ideal time (events x 1 ms / workers) / measured time.
Run: ``python -m bench.b3_pipeline [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import tidings
from bench.common import Row, best_of_async, print_table


@tidings.event("bench.b3.job")
@dataclass(frozen=True, slots=True)
class Job:
    n: int


async def queue_limit(n: int, workers: int, delay: float = 0.0) -> int:
    queue: asyncio.Queue[Job] = asyncio.Queue(1024)
    seen = [0]

    async def handle(job: Job) -> None:
        if delay:
            await asyncio.sleep(delay)
        seen[0] += 1

    async def worker() -> None:
        while True:
            job = await queue.get()
            await handle(job)
            queue.task_done()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for i in range(n):
        await queue.put(Job(i))
    await queue.join()
    for task in tasks:
        task.cancel()
    assert seen[0] == n
    return n


async def tidings_bus(n: int, workers: int, delay: float = 0.0, *, watch: bool = False) -> int:
    bus = tidings.Bus(capacity=1024)
    seen = [0]
    watching = asyncio.create_task(_count_outcomes(bus.outcomes())) if watch else None

    async def handle(job: Job) -> None:
        if delay:
            await asyncio.sleep(delay)
        seen[0] += 1

    bus.subscribe(Job, handle, concurrency=workers)
    async with bus:
        publish = bus.publish
        for i in range(n):
            await publish(Job(i))
    assert seen[0] == n
    if watching is not None:
        assert await watching == n
    return n


async def _count_outcomes(stream: tidings.OutcomeStream) -> int:
    """Outcomes reported, those the reader missed included."""
    count = 0
    async for item in stream:
        count += item.count if isinstance(item, tidings.Missed) else 1
    return count


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = 50_000 if args.quick else 500_000
    rows = [
        Row("limit: asyncio.Queue(1024)", *best_of_async(lambda: queue_limit(n, 4))),
        Row("tidings Bus, concurrency=4", *best_of_async(lambda: tidings_bus(n, 4))),
        Row(
            "tidings Bus, outcomes read",
            *best_of_async(lambda: tidings_bus(n, 4, watch=True)),
            "bus.outcomes() read by a task",
        ),
    ]
    result = print_table(
        f"B3: {n:,} events through a bounded channel to 4 workers (target >= 0.80x)",
        rows,
        rows[0].name,
        args.json,
    )
    io_n, io_workers, io_delay = (5_000 if args.quick else 20_000), 100, 0.001
    ideal = io_n * io_delay / io_workers
    io_rows = []
    for name, run in (("asyncio.Queue", queue_limit), ("tidings Bus", tidings_bus)):
        started = time.perf_counter()
        asyncio.run(run(io_n, io_workers, io_delay))
        elapsed = time.perf_counter() - started
        io_rows.append(Row(name, io_n, elapsed, f"efficiency {ideal / elapsed:.2f}"))
    result += print_table(
        f"B3: {io_n:,} events with 1 ms of I/O on 100 workers (target efficiency >= 0.60)",
        io_rows,
        io_rows[0].name,
        args.json,
    )
    return result


if __name__ == "__main__":
    main()
