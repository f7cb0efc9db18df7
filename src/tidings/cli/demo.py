"""``tidings demo``: the signup flow of :mod:`tidings.examples.signup` with 1,000 users, end to end.

With no options it runs on the embedded default, a SQLite file in a new temporary directory (kept
afterwards, so ``tidings dlq list --url …`` can look at the dead letters); ``--url`` runs the same
code on a broker. It publishes the signups, shows a live progress bar per service as their
handlers finish, and prints a summary: signups handled per service, retries, dead letters grouped
by reason, elapsed time and events per second, then the trace of one publish as a tree
(:mod:`tidings.cli.demo_trace`; it needs the OpenTelemetry SDK, and says so when it is missing).
``--json`` prints the summary as one JSON object instead. The exit status is 0 when every
service finished every signup (handled or dead-lettered) within ``--timeout``.

The counts come from the services themselves (mails sent, attempts made, audit entries, rows
inserted) and from the dead-letter store as letters are added, never from logs.
``tidings demo bank`` runs the event-sourcing demo (:mod:`tidings.cli.demo_bank`).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tidings.cli.connect import run
from tidings.cli.demo_bank import run_bank_demo
from tidings.cli.demo_report import (
    BATCH,
    SERVICES,
    Reason,
    Summary,
    follow,
    reasons,
    service_groups,
)
from tidings.cli.demo_workers import run_worker_demo
from tidings.cli.store import Json, write_json
from tidings.message import Message
from tidings.middleware import Handler, Middleware
from tidings.testing.dead_letters import RecordingDeadLetters
from tidings.transports import from_url, redact

if TYPE_CHECKING:
    from tidings.cli.demo_trace import TraceRecorder

__all__ = ["SERVICES", "Reason", "Summary", "app", "run_signup_demo"]

app = typer.Typer(
    help="The signup demo (the default) and, as `tidings demo bank`, the event-sourcing demo."
)


def _signalling(changed: asyncio.Event) -> Middleware:
    """Set ``changed`` after every handler call, so the demo looks at the counts again."""

    def wrap(handler: Handler) -> Handler:
        async def call(message: Message) -> None:
            try:
                await handler(message)
            finally:
                changed.set()

        return call

    return wrap


async def run_signup_demo(
    url: str,
    count: int,
    directory: Path,
    *,
    timeout: float,
    progress: Callable[[dict[str, int]], None] = lambda finished: None,
    recorder: TraceRecorder | None = None,
) -> Summary:
    """Publish ``count`` signups on ``url`` and wait until every service finished each one.

    ``progress`` is called with the signups finished per service (handled or dead-lettered)
    each time that changes. ``recorder`` traces one publish: the one carrying the first signup
    whose address cannot work, so that its trace shows a dead letter beside retried mails.
    Raises what the transport raises when it cannot connect.
    """
    from tidings.examples import signup  # registers its event: only when the demo runs

    changed = asyncio.Event()
    transport = from_url(url)
    letters = RecordingDeadLetters(transport.dead_letters(), changed)
    flow = signup.build(
        transport,
        preferences_db=directory / "preferences.db",
        dead_letters=letters,
        middleware=[_signalling(changed)],
        telemetry=recorder.telemetry if recorder is not None else None,
    )
    groups = service_groups()

    def handled() -> dict[str, int]:
        return {
            "email": len(flow.email.sent),
            "audit": len(flow.audit.entries),
            "preferences": flow.preferences.created,
        }

    def finished() -> dict[str, int]:
        dead = Counter(letter.group for letter in letters.added)
        return {name: done + dead[groups[name]] for name, done in handled().items()}

    try:
        await flow.bus.start()
        started = time.perf_counter()
        events = list(signup.sample_signups(count))
        traced = next((i for i, e in enumerate(events) if "@" not in e.email), 0) // BATCH
        for first in range(0, count, BATCH):
            batch = events[first : first + BATCH]
            if recorder is not None and first // BATCH == traced:
                await recorder.publish(flow.bus, batch, lambda event: f"user {event.user_id}")
            else:
                await flow.bus.publish_many(batch)
        complete = await follow(finished, changed, count, timeout=timeout, progress=progress)
        elapsed = time.perf_counter() - started
    finally:
        await flow.aclose()
    return Summary(
        url=redact(url),
        transport=type(transport).__name__,
        count=count,
        complete=complete,
        handled=handled(),
        retried=flow.email.retried,
        dead_lettered=len(letters.added),
        reasons=reasons((d.group, d.error_type, d.error_message) for d in letters.added),
        elapsed_seconds=round(elapsed, 3),
        events_per_second=round(count / elapsed, 1),
        directory=str(directory),
    )


@contextmanager
def _quiet_dead_letter_warnings() -> Iterator[None]:
    """The summary reports the dead letters; a warning for each would only push it away."""
    logger = logging.getLogger("tidings")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _print_summary(console: Console, summary: Summary) -> None:
    dead = Counter[str]()
    for reason in summary.reasons:
        dead[reason.service] += reason.count
    table = Table(
        title=f"{summary.count:,} signups on {summary.transport}",
        caption=f"retried {summary.retried:,} · dead-lettered {summary.dead_lettered:,} · "
        f"{summary.elapsed_seconds:.2f} s · {summary.events_per_second:,.0f} events/s",
        min_width=60,
    )
    table.add_column("service")
    table.add_column("handled", justify="right")
    table.add_column("dead-lettered", justify="right")
    for name in SERVICES:
        table.add_row(name, f"{summary.handled[name]:,}", f"{dead[name]:,}")
    console.print(table)
    if summary.handled_by_worker:
        workers = Table(title="handled per worker process", min_width=60)
        workers.add_column("worker")
        for name in SERVICES:
            workers.add_column(name, justify="right")
        for number, handled in summary.handled_by_worker.items():
            workers.add_row(number, *(f"{handled[name]:,}" for name in SERVICES))
        console.print(workers)
    if summary.reasons:
        reasons = Table(title="dead letters by reason", min_width=60)
        reasons.add_column("service")
        reasons.add_column("reason")
        reasons.add_column("count", justify="right")
        for reason in summary.reasons:
            error = f"{reason.error_type.rpartition('.')[2]}: {reason.error_message}"
            reasons.add_row(escape(reason.service), escape(error), f"{reason.count:,}")
        console.print(reasons)
    if not summary.complete:
        console.print("[red]not every signup was finished before the timeout[/]")
    elif summary.dead_lettered and not summary.url.startswith("memory:"):
        command = f"tidings dlq list --url {summary.url}"
        console.print(f"[dim]see the dead letters:[/] {escape(command)}", soft_wrap=True)


def _trace_recorder() -> TraceRecorder | None:
    """What records the trace the demo ends with; None without the OpenTelemetry SDK."""
    try:
        from tidings.cli.demo_trace import TraceRecorder
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        return None
    return TraceRecorder()


def _print_trace(console: Console, recorder: TraceRecorder | None) -> None:
    if recorder is None:
        console.print(
            "[dim]no trace: the OpenTelemetry SDK is missing (pip install 'tidings\\[otel]')[/]"
        )
    elif (tree := recorder.tree()) is not None:
        console.print("the trace of one publish:")
        console.print(tree)


@app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="Transport (default: a SQLite file in a new temporary directory)."),
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="How many users sign up.")] = 1000,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the services to finish.")
    ] = 300.0,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Run the services in this many worker processes sharing their groups."
        ),
    ] = 1,
    json: Json = False,
) -> None:
    """The signup demo: users sign up; email, audit and preferences services react."""
    if ctx.invoked_subcommand is not None:
        return
    if workers > 1 and url is not None and not from_url(url).features.persistent:
        raise typer.BadParameter(
            "worker processes need a transport they share (not memory://)", param_hint="--workers"
        )
    directory = Path(tempfile.mkdtemp(prefix="tidings-demo-"))
    url = url or f"sqlite:///{directory / 'signup.db'}"
    console = Console(highlight=False)
    recorder = None if json or workers > 1 else _trace_recorder()

    def run_demo(progress: Callable[[dict[str, int]], None]) -> Awaitable[Summary]:
        if workers > 1:
            news = Console(stderr=True, highlight=False)
            return run_worker_demo(
                url, count, directory, workers, timeout=timeout, progress=progress,
                tell=lambda line: news.print(escape(line)),
            )  # fmt: skip
        return run_signup_demo(
            url, count, directory, timeout=timeout, progress=progress, recorder=recorder
        )

    async def main() -> Summary:
        if json:
            return await run_demo(lambda finished: None)
        processes = f" in {workers} worker processes" if workers > 1 else ""
        console.print(f"{count:,} users sign up on [bold]{escape(redact(url))}[/]{processes}")
        columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as bars:
            tasks = {name: bars.add_task(name, total=count) for name in SERVICES}

            def show(finished: dict[str, int]) -> None:
                for name, done in finished.items():
                    bars.update(tasks[name], completed=done)

            return await run_demo(show)

    with _quiet_dead_letter_warnings():
        summary = run(main(), url)
    if json:
        write_json(summary)
    else:
        _print_summary(console, summary)
        if workers > 1:
            console.print(f"[dim]the workers' output:[/] {escape(str(directory / 'workers.log'))}")
        else:
            _print_trace(console, recorder)
    if not summary.complete:
        raise typer.Exit(1)


@app.command()
def bank(
    url: Annotated[
        str | None, typer.Option(help="Event store (default: a SQLite file in the temp directory).")
    ] = None,
) -> None:
    """The event-sourcing demo: a bank account saved, then rebuilt by another process."""
    try:
        run_bank_demo(Console(highlight=False), url)
    except RuntimeError as exc:
        Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
