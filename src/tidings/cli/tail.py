"""``tidings tail TOPIC``: watch the messages on a topic as they arrive.

tail subscribes to the transport itself, without handlers: every message is shown and acknowledged
in its group, none is decoded into a class (so none can fail and be dead-lettered). Without
``--group`` it joins a group of its own, named ``tidings-tail-…``, and so sees every message
without taking any from the application's groups. Where a new group starts at the beginning of
the log (SQLite, PostgreSQL, Kafka…) it shows the messages still kept there first. On brokers that
keep a group's queue after it disconnects (RabbitMQ, JetStream) pass ``--group`` to reuse one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from tidings.cli.connect import DEFAULT_URL, Url, open_bus, run
from tidings.cli.store import Json, write_json
from tidings.codec import JsonCodec
from tidings.message import Malformed, Message, new_id
from tidings.transports.base import Delivery, Subscription
from tidings.urls import redact

__all__ = ["as_json", "follow", "payload_text", "tail"]

_codec = JsonCodec()


def payload_text(data: Any) -> bytes:
    """The payload as JSON bytes: bytes stay as they are (a Malformed message's as received),
    objects (in process) are encoded."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, Malformed):
        return data.raw
    return _codec.encode(data)


def as_json(delivery: Delivery) -> dict[str, Any]:
    """One delivery for ``--json``; a payload that is not JSON is given as a string."""
    message = delivery.message
    raw = payload_text(message.data)
    data: Any
    try:
        msgspec.json.decode(raw)
        data = msgspec.Raw(raw)
    except (msgspec.DecodeError, RecursionError):  # not JSON, or nested past msgspec's limit
        data = raw.decode(errors="replace")
    return {
        "id": message.id,
        "type": message.type,
        "key": message.key,
        "headers": dict(message.headers),
        "time": message.time,
        "attempt": delivery.attempt,
        "data": data,
    }


def _line(message: Message) -> Text:
    line = Text()
    line.append(datetime.fromtimestamp(message.timestamp).strftime("%H:%M:%S.%f")[:-3], "dim")
    line.append(f" {message.type}", "cyan")
    if message.key is not None:
        line.append(f" key={message.key}", "magenta")
    line.append(f" {message.id}", "dim")
    if message.headers:
        line.append(" " + msgspec.json.encode(dict(message.headers)).decode(), "dim")
    line.append(" " + payload_text(message.data).decode(errors="replace"))
    return line


async def follow(
    subscription: Subscription, show: Callable[[Delivery], None], count: int | None = None
) -> None:
    """Show and acknowledge each delivery of ``subscription``, in order, until ``count`` were
    shown (forever when None); then close the subscription."""
    seen = 0
    try:
        async for batch in subscription:
            for delivery in batch:
                show(delivery)
                await delivery.ack()
                seen += 1
                if seen == count:
                    return
    finally:
        await subscription.aclose()


def tail(
    topic: Annotated[str, typer.Argument(help="Topic or pattern (user.* one token, user.> many).")],
    url: Url = DEFAULT_URL,
    group: Annotated[
        str | None, typer.Option(help="Consumer group to read as (default: a new one).")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many messages.")] = None,
    json: Json = False,
) -> None:
    """Show messages on TOPIC as they arrive, until Ctrl-C (or --count messages)."""
    group = group or f"tidings-tail-{new_id()[-12:]}"
    console = Console(highlight=False)
    if not json:
        Console(stderr=True).print(
            f"[dim]following {escape(topic)} as group {escape(group)} on "
            f"{escape(redact(url))}; Ctrl-C to stop[/]"
        )

    def show(delivery: Delivery) -> None:
        if json:
            write_json(as_json(delivery))
        else:
            console.print(_line(delivery.message), soft_wrap=True)

    async def main() -> None:
        async with open_bus(url) as bus:
            prefetch = min(count, 256) if count is not None else 256
            await follow(
                bus.transport.subscribe(topic, group=group, prefetch=prefetch), show, count
            )

    run(main(), url)
