"""B6's per-message tables: publishing one event at a time, awaiting each confirmation, and 64
Tasks doing so against one ``publish_many`` per batch.

Every B6 script runs these with ``--awaited``. The contenders are the usual ``Contender``
functions, whose ``publish(count)`` here sends ``count`` events the way the row names (one
awaited publish after another, or 64 Tasks, or bulk). Contenders take turns round by round
(``--rounds``), each round in a fresh event loop, so the machine's noise falls on all of them
alike; the table shows each one's median. Two rates per row: ``publish`` (events over the time
until the last publish returned) and ``end to end`` (until the last event was handled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import statistics
import time
from collections.abc import Sequence

from bench.b6_common import BATCH, TASKS, BusContender, Contender, Counter, warmed

__all__ = ["AWAITED", "CONCURRENT", "awaited_report", "bus_rows"]

AWAITED = 5_000
"""Events of the per-message run."""
CONCURRENT = 20_000
"""Events of the 64-Tasks-against-``publish_many`` run."""


async def _timed(contender: Contender, n: int) -> tuple[float, float]:
    """Seconds until ``n`` events were published, and until they were all handled."""
    counter = Counter(1)
    publish, close = await warmed(contender, counter)
    counter.reset(n)
    try:
        started = time.perf_counter()
        await publish(n)
        published = time.perf_counter() - started
        await counter.wait()
        return published, time.perf_counter() - started
    finally:
        await close()


def _table(
    title: str,
    n: int,
    rounds: int,
    contenders: Sequence[tuple[str, Contender, str]],
    only: str | None,
) -> list[dict[str, object]]:
    contenders = [
        row for i, row in enumerate(contenders) if not (i and only and only not in row[0].lower())
    ]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in contenders}
    for _ in range(rounds):
        for name, contender, _ in contenders:
            runs[name].append(asyncio.run(_timed(contender, n)))
    rows: list[dict[str, object]] = []
    base: tuple[float, float] | None = None
    for name, _, note in contenders:
        publish = n / statistics.median(p for p, _ in runs[name])
        end_to_end = n / statistics.median(h for _, h in runs[name])
        base = base or (publish, end_to_end)
        rows.append(
            {
                "name": name,
                "events": n,
                "rounds": rounds,
                "publish_rate": publish,
                "end_to_end_rate": end_to_end,
                "publish_ratio": publish / base[0],
                "end_to_end_ratio": end_to_end / base[1],
                "note": note,
            }
        )
    print(f"\n{title} (median of {rounds} rounds, ratios to the first row)")
    print(f"  {'implementation':<38}{'publish/s':>11}{'ratio':>7}{'end to end/s':>14}{'ratio':>7}")
    for row in rows:
        print(
            f"  {row['name']:<38}{row['publish_rate']:>11,.0f}{row['publish_ratio']:>6.2f}x"
            f"{row['end_to_end_rate']:>14,.0f}{row['end_to_end_ratio']:>6.2f}x  {row['note']}"
        )
    return rows


def awaited_report(
    args: argparse.Namespace,
    broker: str,
    awaited: Sequence[tuple[str, Contender, str]],
    concurrent: Sequence[tuple[str, Contender, str]],
) -> dict[str, list[dict[str, object]]]:
    """Run and print both tables: ``awaited`` (the raw client first: the ratios' base) with
    :data:`AWAITED` events, ``concurrent`` (``publish_many`` first) with :data:`CONCURRENT`.
    ``args`` are the flags of :func:`~bench.b6_common.parse_args`; ``--only`` never skips a
    table's first row."""
    as_json, rounds, only = args.json, args.rounds, args.only and args.only.lower()
    with contextlib.redirect_stdout(io.StringIO()) if as_json else contextlib.nullcontext():
        result = {
            "awaited": _table(
                f"B6 {broker}: {AWAITED:,} events, each publish awaited before the next",
                AWAITED,
                rounds,
                awaited,
                only,
            ),
            "concurrent": _table(
                f"B6 {broker}: {CONCURRENT:,} events, 64 Tasks against publish_many",
                CONCURRENT,
                rounds,
                concurrent,
                only,
            ),
        }
    if as_json:
        print(json.dumps({"benchmark": f"B6 {broker} per-message", **result}))
    return result


Row = tuple[str, BusContender, str]
"""A Bus contender with its name and note."""


def bus_rows(bus: BusContender) -> tuple[Row, list[Row]]:
    """A broker's Bus rows of both tables: the awaited loop, then ``publish_many`` and 64 Tasks
    (``bus`` must hand a ``tasks`` run its whole count at once, not in windows)."""
    awaited = ("tidings Bus", functools.partial(bus, tasks=1), "await bus.publish(e) in a loop")
    concurrent: list[Row] = [
        ("tidings Bus, publish_many", bus, f"publish_many of {BATCH}"),
        (
            f"tidings Bus, {TASKS} Tasks",
            functools.partial(bus, tasks=TASKS),
            f"{TASKS} Tasks awaiting publish in a loop",
        ),
    ]
    return awaited, concurrent
