"""What the bus commands share: the ``--url`` option, opening a bus, and reporting failures.

Every command that talks to a transport takes ``--url`` (or ``TIDINGS_URL``); the default is the
embedded SQLite file ``.tidings/bus.db``, whose directory is created on first use. Failures to
reach or use the transport become one line on stderr and exit status 1, with any password in the
URL replaced by ``***`` (messages from broker clients included).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape

from tidings.bus import Bus
from tidings.errors import TidingsError
from tidings.transports import redact

__all__ = ["DEFAULT_URL", "Url", "open_bus", "run", "scrub"]

T = TypeVar("T")

DEFAULT_URL = "sqlite:///.tidings/bus.db"

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="TIDINGS_URL",
        help="Transport: sqlite:///file.db, postgresql://…, nats://…, kafka://…, amqp://…, "
        "redis://…",
    ),
]


def scrub(text: str, url: str | None) -> str:
    """``text`` with ``url``'s password replaced by ``***`` wherever it appears."""
    if not url:
        return text
    password = urlsplit(url).password
    text = text.replace(url, redact(url))
    return text.replace(password, "***") if password else text


def run(main: Coroutine[Any, Any, T], url: str | None = None) -> T:
    """Run ``main``; errors of the transport or the URL become a message and exit status 1.

    Interrupting with Ctrl-C exits with status 130 without a traceback.
    """
    try:
        return asyncio.run(main)
    except (TidingsError, ValueError, ImportError, OSError) as exc:
        reason = scrub(str(exc) or type(exc).__name__, url)
        Console(stderr=True).print(f"[red]error:[/] {escape(reason)}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@asynccontextmanager
async def open_bus(url: str) -> AsyncIterator[Bus]:
    """A started bus on ``url``, with no subscriptions, closed on exit."""
    if urlsplit(url).scheme == "sqlite":
        Path(urlsplit(url).path[1:]).parent.mkdir(parents=True, exist_ok=True)
    async with Bus(url) as bus:
        yield bus
