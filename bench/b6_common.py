"""What the B6 broker benchmarks share: the event counter, the 100-byte payload, publishing in
windows, the throughput and steady-rate latency measurements, flags and the report.

A contender is a coroutine function that, given a ``Counter``, sets up a consumer (which calls
``counter.hit`` once per handled event) and a publisher, and returns ``(publish, close)``.
``publish(count)`` publishes ``count`` events and returns once the broker confirmed them;
``close()`` stops both and removes what the contender created on the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import itertools
import json
import statistics
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tidings
from bench.common import Row, print_table
from tidings.transports.base import Subscription

__all__ = [
    "BATCH",
    "PING_PAD",
    "TASKS",
    "PREFETCH",
    "BusContender",
    "Close",
    "Contender",
    "Counter",
    "Ping",
    "Publish",
    "body",
    "bus_rows",
    "count_deliveries",
    "each",
    "one_by_one",
    "parse_args",
    "report",
    "since",
    "start_bus",
    "warmed",
    "windows",
]

BATCH = 1000
"""Events per publish call (and per window) in the throughput runs."""
PREFETCH = 1000
"""Deliveries a consumer may hold unacknowledged."""
KEYS = 100
"""Keys of the keyed runs."""
TASKS = 64
"""Publishing Tasks of the concurrent-publish runs."""
STALL = 30.0
"""Seconds a run waits for its next handled event before it fails (see ``Counter.wait``)."""
_STAMP = struct.Struct("d")
_PAD = b"x" * (100 - _STAMP.size)


def body() -> bytes:
    """100 bytes starting with the send time, for latency."""
    return _STAMP.pack(time.perf_counter()) + _PAD


def since(data: bytes) -> float:
    """Seconds since the send time at the start of ``data`` (made by ``body``)."""
    sent: float = _STAMP.unpack_from(data)[0]
    return time.perf_counter() - sent


@tidings.event("bench.b6.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    """The event the Bus contenders publish; ``sent`` is ``time.perf_counter()`` at publish."""

    sent: float
    pad: str  # with the JSON framing the payload is ~100 bytes


PING_PAD = "x" * 66


class Counter:
    """Counts handled events; ``done`` resolves at ``n``; records latencies when given a list.

    Create it inside the event loop that runs the contender (``done`` belongs to that loop).
    """

    def __init__(self, n: int, latencies: list[float] | None = None) -> None:
        self.latencies = latencies
        self.reset(n)

    def reset(self, n: int) -> None:
        """Count ``n`` more events from zero, forgetting recorded latencies."""
        self.n = n
        self.seen = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.latencies is not None:
            self.latencies.clear()

    def hit(self, latency: float) -> None:
        """One event handled, ``latency`` seconds after it was published."""
        self.seen += 1
        if self.latencies is not None:
            self.latencies.append(latency)
        if self.seen >= self.n and not self.done.done():
            self.done.set_result(None)

    def watch(self, task: asyncio.Future[Any], what: str) -> None:
        """Make :meth:`wait` raise if ``task`` (a consumer loop, a publish) fails: otherwise
        the events it would have handled or sent never come and the run waits for ever."""

        def ended(task: asyncio.Future[Any]) -> None:
            if not task.cancelled() and (error := task.exception()) and not self.done.done():
                self.done.set_exception(RuntimeError(f"{what} failed: {error!r}"))

        task.add_done_callback(ended)

    async def wait(self) -> None:
        """Return once ``n`` events were handled. Raises RuntimeError, saying how far the run
        got, when a watched task failed or no event came for :data:`STALL` seconds."""
        while True:
            seen = self.seen
            try:
                await asyncio.wait_for(asyncio.shield(self.done), STALL)
                return
            except TimeoutError:
                if self.seen == seen:
                    raise RuntimeError(
                        f"stuck: {self.seen:,} of {self.n:,} events handled, "
                        f"none in the last {STALL:g}s"
                    ) from None


Publish = Callable[[int], Awaitable[None]]
"""Publishes ``count`` events (one when measuring latency)."""
Close = Callable[[], Awaitable[None]]
Contender = Callable[[Counter], Awaitable[tuple[Publish, Close]]]
"""Sets up consumer and publisher for a counter; returns (publish, close)."""
BusContender = Callable[..., Awaitable[tuple[Publish, Close]]]
"""A broker's Bus contender: its own arguments, then ``start_bus``'s options."""


def bus_rows(bus: BusContender) -> list[tuple[str, BusContender, str]]:
    """The Bus rows of every broker's table: ``publish_many``, keyed, and many Tasks."""
    return [
        ("tidings Bus", bus, f"publish_many of {BATCH}, JSON events"),
        (
            "tidings Bus, keyed",
            functools.partial(bus, keyed=True),
            f"publish_many of {BATCH}, {KEYS} keys, ordered",
        ),
        (
            "tidings Bus, concurrent",
            functools.partial(bus, tasks=TASKS),
            f"{TASKS} Tasks awaiting publish one by one",
        ),
    ]


async def windows(count: int, send: Publish, size: int = BATCH) -> None:
    """``send`` batches of up to ``size`` summing to ``count``, two in flight at a time."""
    previous: asyncio.Future[None] | None = None
    for start in range(0, count, size):
        current = asyncio.ensure_future(send(min(size, count - start)))
        if previous is not None:
            await previous
        previous = current
    if previous is not None:
        await previous


async def one_by_one(count: int, send: Publish) -> None:
    """``send`` batches of up to BATCH summing to ``count``, one at a time."""
    for start in range(0, count, BATCH):
        await send(min(BATCH, count - start))


async def each(count: int, send_one: Callable[[], Awaitable[object]]) -> None:
    """``send_one`` ``count`` times, each awaited (its confirmation) before the next."""
    for _ in range(count):
        await send_one()


async def count_deliveries(
    subscription: Subscription, counter: Counter, latency_of: Callable[[bytes], float] = since
) -> None:
    """Hit ``counter`` for each delivery of ``subscription`` (latency read from its data by
    ``latency_of``), acking each after; returns when the subscription is closed."""
    async for batch in subscription:
        for delivery in batch:
            counter.hit(latency_of(delivery.message.data))
            await delivery.ack()


async def start_bus(
    app: tidings.Bus,
    counter: Counter,
    group: str = "b6",
    topic: str | None = None,
    *,
    keyed: bool = False,
    tasks: int = 0,
) -> Publish:
    """Subscribe a handler hitting ``counter`` for each ``Ping`` (on ``topic``, else Ping's
    own), start ``app``, and return ``send(count)``: one ``publish_many`` of ``count`` Pings,
    ``keyed`` with 100 keys in turn (and an ordered subscription) or not; or, with ``tasks``,
    that many Tasks each awaiting ``publish`` of one Ping after another."""
    keys = itertools.cycle([f"key-{n}" for n in range(KEYS)])

    async def handle(event: Ping) -> None:
        counter.hit(time.perf_counter() - event.sent)

    app.subscribe(topic or Ping, handle, group=group, concurrency=PREFETCH // 2, ordered=keyed)
    await app.start()

    async def publisher(count: int) -> None:
        for _ in range(count):
            await app.publish(Ping(time.perf_counter(), PING_PAD), topic=topic)

    async def send(count: int) -> None:
        if tasks:  # at most one Task per event: a latency run publishes one at a time
            running = min(tasks, count)
            share, extra = divmod(count, running)
            await asyncio.gather(*(publisher(share + (n < extra)) for n in range(running)))
            return
        now = time.perf_counter()
        pings = (Ping(now, PING_PAD) for _ in range(count))
        await app.publish_many(pings, topic=topic, key=(lambda _: next(keys)) if keyed else None)

    return send


async def warmed(contender: Contender, counter: Counter) -> tuple[Publish, Close]:
    """Set ``contender`` up and return once one event made it through (consumer attached)."""
    counter.reset(1)
    publish, close = await contender(counter)
    await publish(1)
    await counter.wait()
    return publish, close


async def throughput(contender: Contender, n: int, warm_up: bool) -> float:
    """Seconds from the first publish until the last of ``n`` events was handled; with
    ``warm_up`` the clock starts only after one event went through."""
    counter = Counter(n)
    if warm_up:
        publish, close = await warmed(contender, counter)
        counter.reset(n)
    else:
        publish, close = await contender(counter)
    started = time.perf_counter()
    try:
        await publish(n)
        await counter.wait()
        return time.perf_counter() - started
    finally:
        await close()


async def latency(contender: Contender, n: int, rate: float) -> tuple[float, float]:
    """p50 and p99 publish-to-handler latency (ms) of ``n`` events published one by one at
    ``rate`` per second, after one warm-up event; each publish runs in its own task so a slow
    confirmation does not hold the schedule."""
    latencies: list[float] = []
    counter = Counter(1, latencies)
    publish, close = await warmed(contender, counter)
    counter.reset(n)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Future[None]] = set()
    started = loop.time()
    for i in range(n):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule of the steady rate
        task = asyncio.ensure_future(publish(1))
        tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(tasks.discard)
        counter.watch(task, "a publish")
    try:
        await counter.wait()
    finally:
        await close()
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def parse_args(argv: list[str] | None, doc: str | None) -> argparse.Namespace:
    """The flags every B6 script takes: ``--quick``, ``--json``, ``--only NAME``."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="10,000 events, 1 s of latency")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="run the contenders whose name contains this")
    parser.add_argument(
        "--awaited",
        action="store_true",
        help="only the per-message tables: each publish awaited, 64 Tasks (bench.b6_awaited)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --awaited")
    return parser.parse_args(argv)


LATENCY_RATE = 1000.0


def report(
    args: argparse.Namespace,
    broker: str,
    contenders: Sequence[tuple[str, Contender, str]],
    warm_up: bool = False,
) -> list[dict[str, object]]:
    """Measure throughput and latency of each (name, contender, note) and print the table.

    The first contender is the limit the others are compared with: ``--only`` never skips it.
    Each measurement runs in its own event loop. Rows also carry ``p50_ms``, ``p99_ms``, the
    same over the limit's (``p50_vs_limit``, ``p99_vs_limit``) and ``vs_faststream`` (rate over
    the first FastStream row's, None without one).
    """
    n = 10_000 if args.quick else 100_000
    steady = 1_000 if args.quick else 5_000
    rows = []
    percentiles: dict[str, tuple[float, float]] = {}
    for index, (name, contender, note) in enumerate(contenders):
        if index and args.only and args.only.lower() not in name.lower():
            continue
        seconds = asyncio.run(throughput(contender, n, warm_up))
        percentiles[name] = asyncio.run(latency(contender, steady, LATENCY_RATE))
        rows.append(Row(name, n, seconds, note))
    target = "target >= 0.80x, >= 3x FastStream"
    title = f"B6 {broker}: {n:,} events of 100 bytes end to end ({target})"
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        result = print_table(title, rows, rows[0].name)
    fast = next((r.rate for r in rows if r.name.startswith("FastStream")), None)
    limit_p50, limit_p99 = percentiles[rows[0].name]
    for row, source in zip(result, rows, strict=True):
        row["p50_ms"], row["p99_ms"] = p50, p99 = percentiles[source.name]
        row["p50_vs_limit"], row["p99_vs_limit"] = p50 / limit_p50, p99 / limit_p99
        row["vs_faststream"] = source.rate / fast if fast else None
    if args.json:
        rate = int(LATENCY_RATE)
        print(json.dumps({"benchmark": title, "latency_rate": rate, "rows": result}))
        return result
    print(
        f"  at a steady {LATENCY_RATE:,.0f} events/s: p50 / p99 publish-to-handler latency,"
        " and each over the limit's (target <= 1.5x)"
    )
    for row in result:
        versus = row["vs_faststream"]
        shown = f"{versus:>8.2f}x FastStream" if isinstance(versus, float) else ""
        print(
            f"  {row['name']:<34}{row['p50_ms']:>7.2f} ms{row['p99_ms']:>7.2f} ms"
            f"{row['p50_vs_limit']:>7.2f}x{row['p99_vs_limit']:>7.2f}x{shown}"
        )
    return result
