"""``tidings projections``: how far projections are, and rebuilding one from the start.

The application's projections are named by ``--app module:attribute`` (or ``TIDINGS_PROJECTIONS``):
the attribute is a :class:`~tidings.Projection` or an iterable of them. The module is imported
with the current directory on ``sys.path``, so ``--app myapp.read_models:projections`` works from
the project's root. The store is ``--url``, as for ``tidings store``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tidings.cli.connect import run
from tidings.cli.store import DEFAULT_URL, Json, Url, open_store, write_json
from tidings.eventsourcing.projection import Projection, ProjectionStatus

__all__ = ["app", "load_projections"]

app = typer.Typer(help="Projection status and rebuilds.", no_args_is_help=True)

AppSpec = Annotated[
    str,
    typer.Option(
        "--app",
        envvar="TIDINGS_PROJECTIONS",
        help="module:attribute naming a Projection or a list of them.",
    ),
]


def load_projections(spec: str) -> dict[str, Projection]:
    """The projections named by ``module:attribute``, by name.

    Raises typer.BadParameter when the spec is malformed or names something else.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"expected module:attribute, got {spec!r}", param_hint="--app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load {spec!r}: {exc}", param_hint="--app") from exc
    items: list[object] | None = [found] if isinstance(found, Projection) else None
    if items is None and isinstance(found, Iterable) and not isinstance(found, str):
        items = list(found)
    if items is None or not all(isinstance(p, Projection) for p in items):
        raise typer.BadParameter(
            f"{spec!r} is not a Projection or a list of them", param_hint="--app"
        )
    return {p.name: p for p in items if isinstance(p, Projection)}


def _choose(projections: dict[str, Projection], name: str) -> Projection:
    try:
        return projections[name]
    except KeyError:
        known = ", ".join(sorted(projections)) or "none"
        raise typer.BadParameter(
            f"no projection {name!r} (known: {known})", param_hint="NAME"
        ) from None


@app.command()
def status(
    app_spec: AppSpec,
    name: Annotated[str | None, typer.Argument(help="One projection; all when omitted.")] = None,
    url: Url = DEFAULT_URL,
    json: Json = False,
) -> None:
    """Each projection's checkpoint against the store's head."""
    projections = load_projections(app_spec)
    chosen = [_choose(projections, name)] if name else list(projections.values())

    async def fetch() -> list[ProjectionStatus]:
        async with open_store(url) as store:
            return [await projection.status(store) for projection in chosen]

    statuses = run(fetch(), url)
    if json:
        write_json(
            [
                {"name": s.name, "position": s.position, "head": s.head, "lag": s.lag}
                for s in statuses
            ]
        )
        return
    table = Table("projection", "position", "head", "lag")
    for s in statuses:
        lag = f"[yellow]{s.lag}[/]" if s.lag else "[green]0[/]"
        table.add_row(escape(s.name), str(s.position), str(s.head), lag)
    Console().print(table)


@app.command()
def rebuild(
    app_spec: AppSpec,
    name: Annotated[str, typer.Argument(help="The projection to rebuild.")],
    url: Url = DEFAULT_URL,
    json: Json = False,
) -> None:
    """Empty a projection and handle every stored event again. Stop its runner first."""
    projection = _choose(load_projections(app_spec), name)
    progress_console = Console(stderr=True)
    columns = (
        TextColumn(f"rebuilding {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=progress_console, disable=json) as bar:
        task = bar.add_task(name, total=None)

        def progress(position: int, head: int) -> None:
            bar.update(task, completed=position, total=head)

        async def replay() -> int:
            async with open_store(url) as store:
                return await projection.rebuild(store, progress=progress)

        position = run(replay(), url)
    if json:
        write_json({"name": name, "position": position})
    else:
        Console().print(f"[green]rebuilt[/] {escape(name)} up to position {position}")
