"""Per-key order across worker processes: real workers of one group, keyed messages, kills.

:func:`scale_run` starts ``workers`` processes running this file as a script (``python
scale_helpers.py URL TOPIC GROUP NAME``): a ``Bus`` at the URL whose handler, subscribed with
``ordered=True`` and ``concurrency=8``, prints ``NAME KEY SEQ TIME`` when it starts handling a
message, then sleeps a few milliseconds. Once ``balanced()`` says the group's partitions are
spread over the workers, it publishes ``keys`` keys of ``per_key`` messages each, every key from
its own task (in order per key, the keys concurrently), optionally SIGKILLs the first worker once
a third of the messages were handled, and waits until every message was handled.
:class:`ScaleReport` holds what the workers printed.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tidings.bus import Bus
from tidings.message import Message
from tidings.testing.receiver import waiting
from tidings.transports import from_url

__all__ = ["Balanced", "Handling", "ScaleReport", "scale_run"]

Balanced = Callable[[str, str, int], Awaitable[bool]]
"""``balanced(topic, group, workers)``: whether ``workers`` subscriptions of ``group`` on
``topic`` each own a share of its partitions (asked of the broker)."""

_PAUSE = 0.004
"""Seconds each handler call takes."""


@dataclass(frozen=True)
class Handling:
    worker: str
    key: str
    seq: int
    at: int
    """When it started (monotonic ns: one clock for every process of the machine)."""


@dataclass(frozen=True)
class ScaleReport:
    handled: list[Handling]
    """Every handler call, in the order they started."""
    expected: set[tuple[str, int]]
    killed: str | None

    def missing(self) -> set[tuple[str, int]]:
        return self.expected - {(h.key, h.seq) for h in self.handled}

    def again(self) -> int:
        """How many calls handled a message that had been handled before."""
        return len(self.handled) - len({(h.key, h.seq) for h in self.handled})

    def out_of_order(self) -> list[Handling]:
        """Calls that handled a message before the previous one of its key was first handled."""
        seen: dict[str, set[int]] = {}
        wrong = []
        for h in self.handled:
            done = seen.setdefault(h.key, set())
            if h.seq > 0 and h.seq - 1 not in done:
                wrong.append(h)
            done.add(h.seq)
        return wrong

    def shares(self) -> dict[str, float]:
        """Each worker's part of the first handlings."""
        first: dict[tuple[str, int], str] = {}
        for h in self.handled:
            first.setdefault((h.key, h.seq), h.worker)
        counts = Counter(first.values())
        return {worker: count / len(first) for worker, count in counts.items()}


async def scale_run(
    url: str,
    balanced: Balanced,
    *,
    workers: int = 3,
    keys: int = 30,
    per_key: int = 15,
    kill: bool = False,
    timeout: float = 120.0,
) -> ScaleReport:
    """Run the workers and the messages (see the module docstring); the report of what was
    handled. Raises AssertionError when a worker fails or the messages are not all handled
    within ``timeout`` seconds."""
    topic, group = f"scale.{uuid.uuid4().hex[:12]}", f"scale-{uuid.uuid4().hex[:8]}"
    names = [f"w{n}" for n in range(workers)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, url, topic, group, name, stdout=asyncio.subprocess.PIPE
        )
        for name in names
    ]
    handled: list[Handling] = []
    changed = asyncio.Event()
    expected = {(f"key-{k}", n) for k in range(keys) for n in range(per_key)}
    killed = None

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            changed.clear()
            await changed.wait()

    readers = []
    try:
        async with waiting(timeout, f"{len(expected)} messages handled by {workers} workers"):
            for process in processes:
                assert process.stdout is not None
                assert await process.stdout.readline() == b"ready\n", "a worker failed to start"
                readers.append(asyncio.ensure_future(_follow(process, handled, changed)))
            await _until_balanced(balanced, topic, group, workers)
            publishing = asyncio.ensure_future(_publish(url, topic, keys, per_key))
            if kill:
                await until(lambda: len(handled) >= len(expected) // 3)
                processes[0].kill()
                killed = names[0]
            await publishing
            await until(lambda: expected <= {(h.key, h.seq) for h in handled})
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
        await asyncio.gather(*readers)  # each ends with its process's output
    return ScaleReport(sorted(handled, key=lambda h: h.at), expected, killed)


async def _until_balanced(balanced: Balanced, topic: str, group: str, workers: int) -> None:
    while True:
        if await balanced(topic, group, workers):
            return
        await asyncio.sleep(0.05)  # asking the broker: nothing else tells


async def _follow(
    process: asyncio.subprocess.Process, handled: list[Handling], changed: asyncio.Event
) -> None:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        if not line.endswith(b"\n"):
            break  # cut short by a SIGKILL
        worker, key, seq, at = line.split()
        handled.append(Handling(worker.decode(), key.decode(), int(seq), int(at)))
        changed.set()


async def _publish(url: str, topic: str, keys: int, per_key: int) -> None:
    transport = from_url(url)
    await transport.start()

    async def one_key(key: str) -> None:
        for n in range(per_key):
            await transport.publish(topic, [Message("scale.item", b"{}", {"seq": str(n)}, key)])

    try:
        await asyncio.gather(*(one_key(f"key-{k}") for k in range(keys)))
    finally:
        await transport.aclose()


async def _work(url: str, topic: str, group: str, name: str) -> None:
    async def handle(message: Message) -> None:
        print(name, message.key, message.headers["seq"], time.monotonic_ns(), flush=True)
        await asyncio.sleep(_PAUSE)  # the handler's work

    bus = Bus(url)
    bus.subscribe(topic, handle, group=group, ordered=True, concurrency=8)
    async with bus:
        print("ready", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(_work(*sys.argv[1:5]))
