"""``tidings run module:bus``: run an application's bus as a worker process.

The bus is named by ``module:attribute``: a :class:`~tidings.Bus`, or a function taking no
arguments that returns one. The module is imported with the current directory first on
``sys.path``, so ``tidings run myapp.events:bus`` works from the project's root.

The worker starts the bus (its consumers) and runs until SIGINT or SIGTERM. It then drains: it
stops fetching, lets the handlers in flight finish and acknowledges them, and closes the transport;
on the in-process transport every queued message is handled first, or dead-lettered as not
handled once ``--drain-timeout`` passes. It exits 0 after a clean drain. A second signal stops the
drain at once (exit status 1); what was not acknowledged then is delivered again later. A consumer
that gives up (its restart policy ran out, see ``bus.health()``) ends the worker with exit status
2 after a drain, so that the process supervisor starts it again rather than leaving it idle.

``--http HOST:PORT`` serves ``/healthz``, ``/readyz`` and ``/metrics`` (:mod:`.endpoints`) from
before the bus starts until it is closed; ``--otlp URL`` exports spans and metrics by OTLP. The
OpenTelemetry providers they need are set up by :mod:`.exporting` and flushed on the way out.

``--workers N`` runs N such processes under a supervisor instead: see
:mod:`tidings.cli.supervisor`. Worker number ``i`` serves its endpoints on ``PORT + i - 1``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tidings.bus import Bus
from tidings.cli.connect import run as run_async
from tidings.cli.endpoints import parse_address, serving
from tidings.cli.exporting import set_up
from tidings.cli.supervisor import Supervisor, tell_supervisor_ready, watch_supervisor
from tidings.workers import worker_id

__all__ = ["Ending", "load_bus", "run", "serve"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_log = logging.getLogger("tidings.worker")


def load_bus(spec: str) -> Bus:
    """The bus named by ``module:attribute``; raises typer.BadParameter if there is none."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"expected module:attribute, got {spec!r}", param_hint="APP")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module exists; something it imports does not
        raise typer.BadParameter(f"no module named {module_name!r}", param_hint="APP") from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise typer.BadParameter(f"{module_name} has no {attribute!r}", param_hint="APP") from None
    if not isinstance(found, Bus) and callable(found):
        found = found()
    if not isinstance(found, Bus):
        raise typer.BadParameter(
            f"{spec} is {type(found).__name__}, not a Bus or a function returning one",
            param_hint="APP",
        )
    return found


def _nothing() -> None:
    pass


class Ending(Enum):
    """How :func:`serve` ended."""

    DRAINED = "drained"
    """A signal asked it to stop; everything in flight finished."""
    CUT_SHORT = "cut short"
    """A second signal stopped the drain."""
    CONSUMER_FAILED = "consumer failed"
    """A consumer gave up; the bus was drained and closed."""


async def serve(
    bus: Bus,
    *,
    drain_timeout: float | None = None,
    ready: Callable[[], None] = _nothing,
    draining: Callable[[], None] = _nothing,
) -> Ending:
    """Start ``bus``, call ``ready()``, run until SIGINT or SIGTERM or until a consumer fails
    for good, call ``draining()`` and close the bus.

    Raises what ``bus.start()`` raises (the bus is closed then).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    closing: asyncio.Future[None] | None = None

    def on_signal() -> None:
        if closing is None:
            stop.set()
        else:
            closing.cancel()  # a signal while draining: stop waiting for it

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    try:
        try:
            await bus.start()
        except BaseException:
            await bus.aclose()
            raise
        ready()
        stopping = asyncio.ensure_future(stop.wait())
        failing = asyncio.ensure_future(bus.consumer_failed())
        await asyncio.wait((stopping, failing), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        failing.cancel()
        draining()
        closing = asyncio.ensure_future(bus.aclose(timeout=drain_timeout))
        try:
            await closing
        except asyncio.CancelledError:
            if not closing.cancelled():
                raise
            return Ending.CUT_SHORT
        return Ending.DRAINED if stop.is_set() else Ending.CONSUMER_FAILED
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)


def _routes_table(bus: Bus) -> Table:
    table = Table("topic", "group", "handler", "concurrency", title="subscriptions")
    for route in bus.routes:
        table.add_row(
            escape(route.topic), escape(route.group), escape(route.name), str(route.concurrency)
        )
    return table


def run(
    ctx: typer.Context,
    app: Annotated[
        str, typer.Argument(metavar="APP", help="module:attribute naming the Bus (or a factory).")
    ],
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Handler calls at once per subscription (overrides the code)."),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds to wait for queued in-process messages on shutdown."),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Serve /healthz, /readyz and /metrics there (port 0: any free port).",
        ),
    ] = None,
    otlp: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Export traces and metrics by OTLP/HTTP to this collector (default: the "
            "OTEL_EXPORTER_OTLP_* variables, if set).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes to run and keep running (restarted on exit)."),
    ] = 1,
) -> None:
    """Run the bus APP as a worker until SIGINT or SIGTERM, then drain and exit."""
    address = parse_address(http) if http is not None else None
    number = worker_id()
    if address is not None and address[1] and number is not None:
        address = (address[0], address[1] + number - 1)  # one port per worker
    bus = load_bus(app)
    if not bus.routes:
        raise typer.BadParameter(f"{app} has no subscriptions", param_hint="APP")
    if workers > 1:
        raise typer.Exit(_supervise(ctx, workers))
    exporting = set_up(prometheus=http is not None, otlp=otlp)  # after the app set up its own
    served: list[str] = []
    if concurrency is not None:
        for route in bus.routes:
            route.concurrency = concurrency  # read when its consumer starts
    console = Console(stderr=True)
    # With --log-format json a log collector reads stderr: the worker's news are records too.
    as_records = str(ctx.find_root().params.get("log_format")).lower() == "json"

    def tell(news: str, level: int = logging.INFO, style: str = "") -> None:
        if as_records:
            _log.log(level, news)
        else:
            console.print(escape(news), style=style)

    def ready() -> None:
        watch_supervisor()
        tell_supervisor_ready()
        if as_records:
            for route in bus.routes:
                where = {"topic": route.topic, "group": route.group, "route": route.name}
                _log.info("subscribed", extra={**where, "concurrency": route.concurrency})
        else:
            console.print(_routes_table(bus))
        endpoints = f"; endpoints at {served[0]}" if served else ""
        tell(
            f"worker {'' if number is None else f'{number} '}running on "
            f"{type(bus.transport).__name__} (pid {os.getpid()}){endpoints}; "
            "Ctrl-C or SIGTERM drains and stops"
        )

    def draining() -> None:
        tell("draining: waiting for the handlers in flight (signal again to stop now)")

    async def main() -> Ending:
        async with AsyncExitStack() as stack:
            if address is not None:  # up before the bus starts and until it closed
                served.append(await stack.enter_async_context(serving(bus, *address)))
            return await serve(bus, drain_timeout=drain_timeout, ready=ready, draining=draining)

    try:
        ending = run_async(main())
    finally:
        exporting.shut_down()  # sends what OTLP still buffers
    if ending is Ending.CUT_SHORT:
        tell("stopped before the drain finished", logging.WARNING, "yellow")
        raise typer.Exit(1)
    if ending is Ending.CONSUMER_FAILED:
        for failed in bus.health().failed:
            tell(f"consumer {failed.route} failed: {failed.last_error or ''}", logging.ERROR, "red")
        raise typer.Exit(2)
    tell("drained and stopped")


def _supervise(ctx: typer.Context, workers: int) -> int:
    """Run ``workers`` processes of this very command, without ``--workers``; see
    :mod:`tidings.cli.supervisor`. Returns the exit status."""
    root = ctx.find_root().params
    command = ["-m", "tidings.cli"]
    for name in ("log_level", "log_format"):
        command += [f"--{name.replace('_', '-')}", str(root[name])]
    command += ["run", ctx.params["app"]]
    for name in ("concurrency", "drain_timeout", "http", "otlp"):
        if ctx.params[name] is not None:
            command += [f"--{name.replace('_', '-')}", str(ctx.params[name])]
    console = Console(stderr=True)
    supervisor = Supervisor(command, workers, tell=lambda news: console.print(escape(news)))
    return asyncio.run(supervisor.run())
