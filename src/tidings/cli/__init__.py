"""The ``tidings`` command line: one typer app, one module per command (group).

``demo`` runs the signup demo (``demo bank`` the event-sourcing one); ``run`` runs a worker and
``asyncapi`` describes its bus; ``publish``, ``tail``, ``dlq`` and ``groups`` talk to a transport
chosen by ``--url``; ``store`` and ``projections`` look into an event store. Human output uses
rich tables; ``--json`` prints JSON for scripts. Log records (failures in handlers, for one) go
to stderr, as text or, with ``--log-format json``, one JSON object per line
(:mod:`tidings.logs`).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from tidings import logs
from tidings.cli import asyncapi, demo, dlq, groups, projections, publish, store, tail, worker

__all__ = ["app", "main"]

app = typer.Typer(
    name="tidings",
    help="Typed, fast event-driven applications: demo, worker, publish, tail, dead letters, "
    "groups, AsyncAPI.",
    no_args_is_help=True,
)
app.add_typer(demo.app, name="demo")
app.command("run")(worker.run)
app.command("publish")(publish.publish)
app.command("tail")(tail.tail)
app.command("asyncapi")(asyncapi.asyncapi)
app.add_typer(dlq.app, name="dlq")
app.add_typer(groups.app, name="groups")
app.add_typer(store.app, name="store")
app.add_typer(projections.app, name="projections")

_LEVELS = ("debug", "info", "warning", "error")


def _show_version(wanted: bool) -> None:
    if wanted:
        print(f"tidings {version('tidings')}")
        raise typer.Exit()


@app.callback()
def configure(
    log_level: Annotated[
        str, typer.Option(help=f"Log records to show on stderr: {', '.join(_LEVELS)}.")
    ] = "warning",
    log_format: Annotated[
        str,
        typer.Option(
            help="How log records are written: text, or json (one object per line, with the "
            "ids of the message being handled)."
        ),
    ] = "text",
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Typed, fast event-driven applications."""
    if log_level.lower() not in _LEVELS:
        raise typer.BadParameter(f"choose one of {', '.join(_LEVELS)}", param_hint="--log-level")
    log_format = log_format.lower()
    if log_format not in logs.FORMATS:
        raise typer.BadParameter(
            f"choose one of {', '.join(logs.FORMATS)}", param_hint="--log-format"
        )
    if log_format == "json":
        logs.configure("json", log_level)
        return
    handler = RichHandler(console=Console(stderr=True), show_path=False)
    handler.setFormatter(logs.TextFormatter("%(message)s"))  # rich shows time and level
    logs.configure("text", log_level, handler=handler)


def main() -> None:
    """The ``tidings`` console script."""
    app()
