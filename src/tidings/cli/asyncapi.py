"""``tidings asyncapi module:bus``: the AsyncAPI 3.0 document of an application's bus.

The bus is named as for ``tidings run`` (:func:`~tidings.cli.worker.load_bus`) and is not
started: nothing connects to a broker. The document (:func:`tidings.asyncapi.document`) goes to
stdout, or to ``--output``, as JSON or, with PyYAML installed (``pip install 'tidings[yaml]'``),
as YAML.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tidings.asyncapi import document
from tidings.cli.worker import load_bus

__all__ = ["Format", "asyncapi", "render"]


class Format(StrEnum):
    JSON = "json"
    YAML = "yaml"


def render(doc: dict[str, Any], form: Format) -> str:
    """``doc`` as JSON or YAML text, keys in the document's order; raises typer.BadParameter
    for YAML without PyYAML."""
    if form is Format.JSON:
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    try:
        import yaml
    except ImportError:
        raise typer.BadParameter(
            "YAML needs PyYAML: pip install 'tidings[yaml]'", param_hint="--format"
        ) from None
    text: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return text


def asyncapi(
    app: Annotated[
        str, typer.Argument(metavar="APP", help="module:attribute naming the Bus (or a factory).")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the document to this file.")
    ] = None,
    form: Annotated[Format, typer.Option("--format", help="json, or yaml.")] = Format.JSON,
    title: Annotated[
        str | None, typer.Option(help="The document's title (default: APP's module).")
    ] = None,
    api_version: Annotated[str, typer.Option(help="The version of the application's API.")] = (
        "1.0.0"
    ),
) -> None:
    """Print the AsyncAPI 3.0 document of the bus APP: channels, operations, message schemas."""
    bus = load_bus(app)
    doc = document(bus, title=title or app.partition(":")[0], version=api_version)
    text = render(doc, form)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
