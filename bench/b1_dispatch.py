"""B1: 1,000,000 events to 3 synchronous handlers, in process.

The limit is the plainest dispatch there is: a dict of handler lists behind a method, no error
isolation. tidings' ``Bus.emit`` isolates errors (a raising handler never stops the others).
Run: ``python -m bench.b1_dispatch [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import tidings
from bench.common import Row, best_of, print_table


@tidings.event("bench.b1.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    n: int


class Limit:
    """A dict of lists behind a method: the plain-Python limit."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Any]] = {}

    def on(self, name: str, handler: Any) -> None:
        self.handlers.setdefault(name, []).append(handler)

    def emit(self, name: str, event: Any) -> None:
        for handler in self.handlers.get(name, ()):
            handler(event)


def _handlers() -> tuple[list[int], list[Any]]:
    seen = [0]

    def a(event: Any) -> None:
        seen[0] += 1

    def b(event: Any) -> None:
        seen[0] += 1

    def c(event: Any) -> None:
        seen[0] += 1

    return seen, [a, b, c]


def run_limit(n: int) -> int:
    seen, handlers = _handlers()
    bus = Limit()
    for h in handlers:
        bus.on("ping", h)
    event = Ping(1)
    emit = bus.emit
    for _ in range(n):
        emit("ping", event)
    assert seen[0] == 3 * n
    return n


def run_tidings(n: int) -> int:
    seen, handlers = _handlers()
    bus = tidings.Bus()
    for h in handlers:
        bus.subscribe(Ping, h)
    event = Ping(1)
    emit = bus.emit
    for _ in range(n):
        emit(event)
    assert seen[0] == 3 * n
    return n


def run_pyee(n: int) -> int:
    from pyee import EventEmitter

    seen, handlers = _handlers()
    ee = EventEmitter()
    for h in handlers:
        ee.on("ping", h)
    event = Ping(1)
    emit = ee.emit
    for _ in range(n):
        emit("ping", event)
    assert seen[0] == 3 * n
    return n


def run_blinker(n: int) -> int:
    from blinker import Signal

    seen, handlers = _handlers()
    signal = Signal()
    for h in handlers:
        signal.connect(h)
    event = Ping(1)
    send = signal.send
    for _ in range(n):
        send(event)
    assert seen[0] == 3 * n
    return n


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    rows = [
        Row("limit: dict of lists", *best_of(lambda: run_limit(n))),
        Row("tidings Bus.emit", *best_of(lambda: run_tidings(n)), "error isolation on"),
        Row("pyee EventEmitter", *best_of(lambda: run_pyee(n))),
        Row("blinker Signal", *best_of(lambda: run_blinker(n))),
    ]
    return print_table(
        f"B1: {n:,} events to 3 sync handlers (target >= 0.80x)", rows, rows[0].name, args.json
    )


if __name__ == "__main__":
    main()
