"""``tidings groups``: the consumer groups a transport keeps: list (with their lag), drop.

Works on the transports that keep groups (:class:`~tidings.transports.Groups`). Dropping a group
whose handler was renamed or removed lets the transport forget what it kept for it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from tidings.bus import Bus
from tidings.cli.connect import DEFAULT_URL, Url, open_bus, run
from tidings.cli.store import Json, write_json
from tidings.transports import GroupInfo, Groups

__all__ = ["app"]

app = typer.Typer(help="Consumer groups: list with their lag, drop.", no_args_is_help=True)


def _groups(bus: Bus) -> Groups:
    transport = bus.transport
    if not isinstance(transport, Groups):
        raise ValueError(f"{type(transport).__name__} keeps no consumer groups to list or drop")
    return transport


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "unknown"
    seconds = max(now - when, 0.0)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _json(info: GroupInfo) -> dict[str, Any]:
    return {
        "topic": info.topic,
        "group": info.group,
        "lag": info.lag,
        "in_flight": info.in_flight,
        "last_active": info.last_active,
    }


@app.command("list")
def list_(url: Url = DEFAULT_URL, json: Json = False) -> None:
    """List every group's subscription with its lag: messages it has not acknowledged yet."""

    async def fetch() -> list[GroupInfo]:
        async with open_bus(url) as bus:
            return await _groups(bus).groups()

    groups = run(fetch(), url)
    if json:
        write_json([_json(info) for info in groups])
        return
    now = time.time()
    table = Table(title=f"{len(groups)} group(s)", box=box.SIMPLE_HEAD)
    table.add_column("topic")
    table.add_column("group")
    table.add_column("lag", justify="right")
    table.add_column("in flight", justify="right")
    table.add_column("last active")
    for info in groups:
        in_flight = "?" if info.in_flight is None else str(info.in_flight)
        table.add_row(info.topic, info.group, str(info.lag), in_flight, _ago(info.last_active, now))
    Console().print(table)


@app.command()
def drop(
    topic: Annotated[str, typer.Argument(help="The topic (or pattern) as subscribed.")],
    group: Annotated[str, typer.Argument(help="The group to drop.")],
    url: Url = DEFAULT_URL,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Drop without asking.")] = False,
    json: Json = False,
) -> None:
    """Drop a group: the transport forgets its place and what it has not acknowledged."""
    if not yes:
        typer.confirm(
            f"Drop group {group!r} on {topic!r}? Its unacknowledged messages are forgotten for it.",
            abort=True,
            err=True,
        )

    async def remove() -> None:
        async with open_bus(url) as bus:
            await _groups(bus).drop_group(topic, group)

    run(remove(), url)
    if json:
        write_json({"topic": topic, "group": group, "dropped": True})
    else:
        Console().print(f"dropped group {group!r} on {topic!r}")
