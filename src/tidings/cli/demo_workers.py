"""``tidings demo --workers N``: the signup services in N worker processes sharing their groups.

The demo process runs the workers as ``tidings run --workers N`` does, with its
:class:`~tidings.cli.supervisor.Supervisor` (each worker is
``tidings run tidings.cli.demo_worker:create_bus``, their output goes to ``workers.log`` in the
demo's directory), waits until every worker's bus started, publishes the signups, and follows
the workers' reports (:class:`~tidings.cli.demo_worker.Report`, read from a pipe) until every
service finished every signup. Then it stops the workers (each drains) and returns the summary,
with the signups each worker handled per service.

A signup counts as finished for a service once any worker handled it or dead-lettered it; a
redelivered one (a worker restarted, a partition moved) is counted again in its worker's column
only. ``retried`` is the failed handler calls that were tried again: every failure but those
ending in a dead letter.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from tidings.bus import Bus
from tidings.cli.demo_report import BATCH, Summary, follow, reasons, service_groups
from tidings.cli.demo_worker import DIR_ENV, REPORT_ENV, URL_ENV, Report
from tidings.cli.supervisor import Supervisor
from tidings.transports import redact

__all__ = ["Tally", "run_worker_demo"]

T = TypeVar("T")

_WORKER = ["-m", "tidings.cli", "run", "tidings.cli.demo_worker:create_bus"]


class Tally:
    """The workers' reports, added up."""

    def __init__(self) -> None:
        self.groups = service_groups()
        self.changed = asyncio.Event()
        self.finished: defaultdict[str, set[str]] = defaultdict(set)
        """Per group, the ids of the messages handled or dead-lettered."""
        self.handled: defaultdict[str, set[str]] = defaultdict(set)
        self.by_worker: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.failed = 0
        self.dead: list[Report] = []

    def add(self, report: Report) -> None:
        if report.outcome == "failed":
            self.failed += 1
        else:
            self.finished[report.group].add(report.message_id)
        if report.outcome == "handled":
            self.handled[report.group].add(report.message_id)
            self.by_worker[report.worker][report.group] += 1
        elif report.outcome == "dead":
            self.dead.append(report)
        self.changed.set()

    def per_service(self, ids: dict[str, set[str]]) -> dict[str, int]:
        """How many of ``ids`` (per group) each service has."""
        return {name: len(ids[group]) for name, group in self.groups.items()}

    async def read(self, pipe: int) -> None:
        """Add the reports arriving on ``pipe`` (a read end) until every writer closed it."""
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(pipe, "rb")
        )
        try:
            async for line in reader:
                self.add(msgspec.json.decode(line, type=Report))
        finally:
            transport.close()


async def run_worker_demo(
    url: str,
    count: int,
    directory: Path,
    workers: int,
    *,
    timeout: float,
    progress: Callable[[dict[str, int]], None] = lambda finished: None,
    tell: Callable[[str], None] = lambda news: None,
) -> Summary:
    """Publish ``count`` signups on ``url`` and follow ``workers`` worker processes until each
    service finished each one or ``timeout`` passed; see the module docstring. ``tell`` gets
    the supervisor's news (a worker exited and is started again). Raises what the transport
    raises when it cannot connect."""
    from tidings.examples import signup

    tally = Tally()
    reading, writing = os.pipe()
    log = os.open(directory / "workers.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    env = {URL_ENV: url, DIR_ENV: str(directory), REPORT_ENV: str(writing)}
    supervisor = Supervisor(_WORKER, workers, tell=tell, env=env, pass_fds=(writing,), output=log)
    reports = asyncio.ensure_future(tally.read(reading))
    try:
        async with Bus(url) as bus:  # an unreachable broker fails here, before any worker runs
            running = asyncio.ensure_future(supervisor.run())
            try:
                await _before_stop(_ready(supervisor, timeout, directory), running)
                started = time.perf_counter()
                events = list(signup.sample_signups(count))
                for first in range(0, count, BATCH):
                    await bus.publish_many(events[first : first + BATCH])
                finished = follow(
                    lambda: tally.per_service(tally.finished), tally.changed, count,
                    timeout=timeout, progress=progress,
                )  # fmt: skip
                complete = await _before_stop(finished, running)
                elapsed = time.perf_counter() - started
            finally:
                supervisor.stop()
                await running
    finally:
        os.close(writing)
        os.close(log)
        await reports  # every worker's end closed as it exited: the rest is read now
    return Summary(
        url=redact(url),
        transport=type(bus.transport).__name__,
        count=count,
        complete=complete,
        handled=tally.per_service(tally.handled),
        retried=tally.failed - len(tally.dead),
        dead_lettered=len(tally.dead),
        reasons=reasons((r.group, r.error_type, r.error_message) for r in tally.dead),
        elapsed_seconds=round(elapsed, 3),
        events_per_second=round(count / elapsed, 1),
        directory=str(directory),
        workers=workers,
        handled_by_worker={
            str(number): {name: tally.by_worker[number][g] for name, g in tally.groups.items()}
            for number in range(1, workers + 1)
        },
    )


async def _ready(supervisor: Supervisor, timeout: float, directory: Path) -> None:
    """Until every worker's bus started; TimeoutError if that takes ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await supervisor.ready()
    except TimeoutError:
        log = directory / "workers.log"
        late = f"the workers did not all start within {timeout:g} s; see {log}"
        raise TimeoutError(late) from None


async def _before_stop(work: Awaitable[T], running: asyncio.Future[int]) -> T:
    """``work``'s result, unless the supervisor stops first (SIGINT or SIGTERM reached it and
    the workers drained): then KeyboardInterrupt, as for Ctrl-C in process."""
    task = asyncio.ensure_future(work)
    await asyncio.wait((task, running), return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        raise KeyboardInterrupt
    return task.result()
