"""Timing and reporting shared by the benchmarks: best of N runs, rates, ratios to the limit."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Row", "best_of", "best_of_async", "print_table"]


@dataclass
class Row:
    name: str
    events: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def best_of(run: Callable[[], int], repeat: int = 3) -> tuple[int, float]:
    """Run ``run`` (which returns how many events it handled) ``repeat`` times; the fastest."""
    best = float("inf")
    events = 0
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        events = run()
        best = min(best, time.perf_counter() - started)
    return events, best


def best_of_async(
    run: Callable[[], Coroutine[Any, Any, int]], repeat: int = 3
) -> tuple[int, float]:
    """Like best_of for a coroutine function; each run gets a fresh event loop."""

    def once() -> int:
        return asyncio.run(run())

    return best_of(once, repeat)


def print_table(
    title: str, rows: list[Row], limit: str, as_json: bool = False
) -> list[dict[str, object]]:
    """Print rows with events/s and the ratio to the row named ``limit``; returns them as dicts."""
    base = next(r for r in rows if r.name == limit).rate
    result = [{**asdict(r), "rate": r.rate, "ratio": r.rate / base} for r in rows]
    if as_json:
        print(json.dumps({"benchmark": title, "rows": result}))
        return result
    print(f"\n{title}")
    print(f"{'':2}{'implementation':<34}{'events':>10}{'events/s':>14}{'ratio':>8}  note")
    for r in result:
        name, events, rate, ratio = r["name"], r["events"], r["rate"], r["ratio"]
        print(f"  {name:<34}{events:>10,}{rate:>14,.0f}{ratio:>7.2f}x  {r['note']}")
    return result
