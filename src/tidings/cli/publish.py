"""``tidings publish TOPIC JSON``: put one message on a topic, from a shell or a script.

The payload is sent as given (after checking that it is JSON), with the topic as the message type,
so handlers subscribed to the event registered under that name receive it decoded. The command
returns once the transport accepted the message (broker ack or committed row).
"""

from __future__ import annotations

import sys
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.markup import escape

from tidings.cli.connect import DEFAULT_URL, Url, open_bus, run
from tidings.cli.store import Json, write_json
from tidings.message import Message
from tidings.urls import redact

__all__ = ["parse_headers", "publish"]


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """``["k=v", …]`` as a dict; raises typer.BadParameter for a pair without ``=``."""
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--header")
        headers[name] = value
    return headers


def publish(
    topic: Annotated[str, typer.Argument(help="Topic to publish to; also the message type.")],
    payload: Annotated[
        str, typer.Argument(metavar="JSON", help="The event as JSON; '-' reads it from stdin.")
    ],
    url: Url = DEFAULT_URL,
    key: Annotated[str | None, typer.Option(help="Ordering key.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="A header as NAME=VALUE; repeat for more."),
    ] = None,
    json: Json = False,
) -> None:
    """Publish one message to TOPIC."""
    raw = (sys.stdin.read() if payload == "-" else payload).strip().encode()
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="JSON") from None
    message = Message(topic, raw, parse_headers(header or []), key)

    async def send() -> None:
        async with open_bus(url) as bus:
            await bus.publish(message)

    run(send(), url)
    if json:
        write_json(
            {
                "id": message.id,
                "topic": topic,
                "key": key,
                "headers": dict(message.headers),
                "url": redact(url),
            }
        )
        return
    shown_key = f" with key {escape(key)}" if key is not None else ""
    Console().print(
        f"published [bold]{message.id}[/] to [cyan]{escape(topic)}[/]{shown_key} "
        f"on {escape(redact(url))}"
    )
