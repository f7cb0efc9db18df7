"""Worker processes for scale-out cases, and what the cases check of their records.

:class:`Workers` starts :mod:`tidings.testing.scale_worker` processes on one broker URL, topic
and group, reads what each handled (:class:`Handled`) as it happens, and kills or stops them.
:func:`check_order` and :func:`effective` say whether each key's messages were handled in order
across all of them, counting redeliveries after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tidings.testing.receiver import waiting

__all__ = ["Handled", "Workers", "check_order", "effective"]


@dataclass(frozen=True, slots=True)
class Handled:
    """One handler call: which worker, the message's key and number, when it began."""

    worker: str
    key: str
    n: int
    start: float


class Workers:
    """Scale-worker processes of one group; see the module docstring. Use as an async context
    manager: leaving it kills whatever still runs."""

    def __init__(self, url: str, topic: str, group: str, *, delay: float, timeout: float) -> None:
        self.url, self.topic, self.group = url, topic, group
        self.delay = delay
        self.timeout = timeout
        self.handled: list[Handled] = []
        self.partitions: dict[str, list[int] | None] = {}
        """What each worker said last of the partitions it reads."""
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Workers:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for name in list(self._processes):
            await self.kill(name)

    async def start(self, name: str) -> None:
        """Start worker ``name``; returns once its bus runs."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tidings.testing.scale_worker", self.url, self.topic,
            self.group, name, "--delay", str(self.delay), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._processes[name] = process
        self._ready[name] = asyncio.Event()
        self._readers[name] = asyncio.create_task(self._read(name, process))
        async with waiting(self.timeout, f"worker {name} to start"):
            await self._ready[name].wait()

    async def _read(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            match line.split():
                case [b"handled", worker, key, n, start]:
                    record = Handled(worker.decode(), key.decode(), int(n), float(start))
                    self.handled.append(record)
                case [b"ready", _]:
                    self._ready[name].set()
                case [b"partitions", worker, listed]:
                    self.partitions[worker.decode()] = json.loads(listed)
            self._changed.set()
        self._changed.set()

    def exited(self, name: str) -> int | None:
        return self._processes[name].returncode

    async def kill(self, name: str) -> None:
        """SIGKILL worker ``name`` (a crash) and wait for it to end."""
        process = self._processes.pop(name)
        if process.returncode is None:
            process.kill()
        await process.wait()
        await self._readers.pop(name)

    async def stop(self, name: str) -> int:
        """SIGTERM worker ``name``: it drains and exits; returns its exit status."""
        process = self._processes.pop(name)
        process.terminate()
        async with waiting(self.timeout, f"worker {name} to drain and exit"):
            status = await process.wait()
            await self._readers.pop(name)
        return status

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Return once ``condition()`` holds, checked after every record; fail naming ``what``
        after ``timeout`` seconds, or at once if a worker died unasked."""
        async with waiting(self.timeout, f"{what}; got {len(self.handled)} records"):
            while not condition():
                self._changed.clear()
                for name, process in self._processes.items():
                    if process.returncode is not None:
                        raise AssertionError(f"worker {name} exited with {process.returncode}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # a worker's exit sets no line
                        await self._changed.wait()

    def spread(self, count: int) -> bool:
        """Whether the running workers read ``count`` partitions between them, each some and
        none the same (a group settled after workers joined)."""
        read = [self.partitions.get(name) or [] for name in self._processes]
        every = [n for partitions in read for n in partitions]
        return all(read) and sorted(every) == list(range(count))

    def share(self, name: str) -> float:
        """The part of the handler calls that worker ``name`` made."""
        return sum(h.worker == name for h in self.handled) / max(len(self.handled), 1)


def effective(handled: Iterable[Handled]) -> dict[str, list[Handled]]:
    """Per key, the last handling of each message, in the order they began: what took effect
    when a message was handled more than once (redelivered after a crash)."""
    last: dict[tuple[str, int], Handled] = {}
    for record in sorted(handled, key=lambda h: h.start):
        last[record.key, record.n] = record
    by_key: dict[str, list[Handled]] = {}
    for record in sorted(last.values(), key=lambda h: h.start):
        by_key.setdefault(record.key, []).append(record)
    return by_key


def check_order(handled: Iterable[Handled]) -> None:
    """Raise AssertionError unless every key's messages took effect in publish order (the
    numbers of :func:`effective` rise), naming the first key that did not."""
    for key, records in effective(handled).items():
        numbers = [record.n for record in records]
        if numbers != sorted(numbers):
            at = next(i for i in range(1, len(numbers)) if numbers[i] < numbers[i - 1])
            around = [(r.worker, r.n) for r in records[max(at - 3, 0) : at + 2]]
            raise AssertionError(f"key {key} handled out of order around {around}")
