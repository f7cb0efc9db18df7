"""``tidings store``: look into an event store.

``streams`` lists the streams with their versions; ``read STREAM`` prints a stream's events.
The store comes from ``--url`` (or ``TIDINGS_STORE_URL``), the embedded SQLite file
``.tidings/events.db`` by default; these commands never create it (a missing file is an error).
``--json`` prints one JSON array for scripts, with each event's payload embedded as JSON. Errors
(an unknown stream, a missing or unreadable database, a corrupt record) print one line on stderr
and exit with status 1.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tidings.cli.connect import require_database, run
from tidings.eventsourcing.store import EventStore, RecordedEvent, StreamInfo

__all__ = ["DEFAULT_URL", "Json", "Url", "app", "open_store", "write_json"]

DEFAULT_URL = "sqlite:///.tidings/events.db"

app = typer.Typer(help="Inspect the event store.", no_args_is_help=True)

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="TIDINGS_STORE_URL",
        help="Event store: memory://, sqlite:///path or postgresql://…",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def open_store(url: str) -> EventStore:
    """The store at ``url``, not started; raises NotFound for a SQLite file that does not exist."""
    require_database(url)
    return EventStore(url)


def write_json(value: Any) -> None:
    """Print ``value`` as one line of JSON on stdout."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


@app.command()
def streams(url: Url = DEFAULT_URL, json: Json = False) -> None:
    """List the streams with their current version."""

    async def fetch() -> list[StreamInfo]:
        async with open_store(url) as store:
            return await store.streams()

    infos = run(fetch(), url)
    if json:
        write_json([_stream_json(info) for info in infos])
        return
    table = Table("stream", "version", "deleted", "metadata", title=f"{len(infos)} streams")
    for info in infos:
        deleted = "yes" if info.deleted else ""
        table.add_row(Text(info.name), str(info.version), deleted, Text(_short(info)))
    Console().print(table)


@app.command()
def read(
    stream: Annotated[str, typer.Argument(help="The stream to read.")],
    url: Url = DEFAULT_URL,
    json: Json = False,
    from_version: Annotated[
        int | None,
        typer.Option("--from", help="First version to show (the last one with --backwards)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Show at most this many events.")] = None,
    backwards: Annotated[bool, typer.Option(help="Newest first.")] = False,
) -> None:
    """Print the events of STREAM."""

    async def fetch() -> list[RecordedEvent]:
        async with open_store(url) as store:
            await store.stream_info(stream)  # NotFound for a stream that was never written
            events = store.read(stream, from_version=from_version, backwards=backwards, limit=limit)
            return [recorded async for recorded in events]

    events = run(fetch(), url)
    if json:
        write_json([_event_json(recorded) for recorded in events])
        return
    table = Table("ver", "pos", title=escape(stream))
    # Names and times stay whole; the payload folds into what width is left.
    table.add_column("type", min_width=max((len(r.type) for r in events), default=4))
    table.add_column("recorded at", min_width=19)
    table.add_column("data", overflow="fold")
    for recorded in events:
        table.add_row(
            str(recorded.version),
            str(recorded.position),
            recorded.type,
            f"{recorded.recorded_at:%Y-%m-%d %H:%M:%S}",
            Text(recorded.data.decode(errors="replace")),
        )
    Console().print(table)


def _stream_json(info: StreamInfo) -> dict[str, Any]:
    return {
        "stream": info.name,
        "version": info.version,
        "deleted": info.deleted,
        "metadata": dict(info.metadata),
    }


def _event_json(recorded: RecordedEvent) -> dict[str, Any]:
    return {
        "stream": recorded.stream,
        "version": recorded.version,
        "position": recorded.position,
        "type": recorded.type,
        "id": recorded.id,
        "schema_version": recorded.schema_version,
        "recorded_at": recorded.recorded_at,
        "metadata": dict(recorded.metadata),
        "data": _payload(recorded.data),
    }


def _payload(data: bytes) -> Any:
    """The payload as JSON, or as text when another codec wrote it."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data.decode(errors="replace")


def _short(info: StreamInfo) -> str:
    return msgspec.json.encode(dict(info.metadata)).decode() if info.metadata else ""
