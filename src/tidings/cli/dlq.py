"""``tidings dlq``: the dead letters of a transport: list, show, replay, purge.

Works on every transport URL through ``Bus(url).dead_letters``, so it sees the same store the
application's consumers write to. Replaying publishes a letter again to its original topic,
addressed to the group that failed it, and removes it from the store once the publish returned.
A SQLite file that does not exist is an error (exit status 1), not an empty store: these
commands never create one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
import typer
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tidings.cli.connect import DEFAULT_URL, Url, open_bus, run
from tidings.cli.store import Json, write_json
from tidings.dead_letters import PAGE_SIZE, DeadLetter

__all__ = ["app", "letter_json"]

app = typer.Typer(help="Dead letters: list, show, replay, purge.", no_args_is_help=True)

Ids = Annotated[list[str] | None, typer.Argument(help="Dead letter ids (default: all).")]


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter for ``--json``: the payload embedded as JSON when it is JSON."""
    fields = msgspec.structs.asdict(letter)
    try:
        msgspec.json.decode(letter.data)
        fields["data"] = msgspec.Raw(letter.data)
    except (msgspec.DecodeError, RecursionError):  # not JSON, or nested past msgspec's limit
        fields["data"] = letter.data.decode(errors="replace")
    return fields


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _reason(letter: DeadLetter) -> str:
    return f"{letter.error_type.rpartition('.')[2]}: {letter.error_message}"


@app.command("list")
def list_(
    url: Url = DEFAULT_URL,
    topic: Annotated[str | None, typer.Option(help="Only letters from this topic.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = PAGE_SIZE,
    after: Annotated[
        str | None, typer.Option(help="Start after this letter (the last id of a page).")
    ] = None,
    json: Json = False,
) -> None:
    """List dead letters, oldest first: one page of --limit letters."""

    async def fetch() -> list[DeadLetter]:
        async with open_bus(url, create=False) as bus:
            return await bus.dead_letters.list(topic=topic, limit=limit, after=after)

    letters = run(fetch(), url)
    if json:
        write_json([letter_json(letter) for letter in letters])
        return
    table = Table(title=f"{len(letters)} dead letter(s)", box=box.SIMPLE_HEAD)
    table.add_column("id, failed at", no_wrap=True)
    table.add_column("group, attempts")
    table.add_column("reason", ratio=1)
    for letter in letters:
        table.add_row(
            Text.assemble(letter.id, "\n", (_when(letter.failed_at), "dim")),
            Text.assemble(letter.group, "\n", (f"{letter.attempts} attempt(s)", "dim")),
            Text(_reason(letter)),
        )
    Console().print(table)


@app.command()
def show(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter's id.")],
    url: Url = DEFAULT_URL,
    json: Json = False,
) -> None:
    """Show one dead letter: the message, its reason and the traceback."""

    async def fetch() -> DeadLetter:
        async with open_bus(url, create=False) as bus:
            return await bus.dead_letters.show(letter_id)

    letter = run(fetch(), url)
    if json:
        write_json(letter_json(letter))
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for name, value in (
        ("message id", letter.message_id),
        ("topic", letter.topic),
        ("type", letter.type),
        ("group", letter.group),
        ("key", letter.key or ""),
        ("headers", msgspec.json.encode(letter.headers).decode()),
        ("published", _when(letter.published_at)),
        ("failed", _when(letter.failed_at)),
        ("attempts", str(letter.attempts)),
        ("reason", _reason(letter)),
        ("data", letter.data.decode(errors="replace")),
    ):
        facts.add_row(name, Text(value))
    traceback = Panel(Text(letter.traceback), title="traceback", border_style="dim")
    Console().print(Panel(Group(facts, traceback), title=f"dead letter {escape(letter.id)}"))


@app.command()
def replay(ids: Ids = None, url: Url = DEFAULT_URL, json: Json = False) -> None:
    """Deliver dead letters again (all, or the given ids) to the groups that failed them."""

    async def send() -> int:
        async with open_bus(url, create=False) as bus:
            return await bus.dead_letters.replay(ids or None)

    replayed = run(send(), url)
    if json:
        write_json({"replayed": replayed})
    else:
        Console().print(f"replayed {replayed} dead letter(s)")


@app.command()
def purge(
    ids: Ids = None,
    url: Url = DEFAULT_URL,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Purge all without asking (no ids given).")
    ] = False,
    json: Json = False,
) -> None:
    """Delete dead letters for good (the given ids; all of them with --yes)."""
    if not ids and not yes:
        typer.confirm("Delete every dead letter for good?", abort=True, err=True)

    async def remove() -> int:
        async with open_bus(url, create=False) as bus:
            return await bus.dead_letters.purge(ids or None)

    purged = run(remove(), url)
    if json:
        write_json({"purged": purged})
    else:
        Console().print(f"purged {purged} dead letter(s)")
