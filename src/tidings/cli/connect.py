"""What the bus commands share: the ``--url`` option, opening a bus, and reporting failures.

Every command that talks to a transport takes ``--url`` (or ``TIDINGS_URL``); the default is the
embedded SQLite file ``.tidings/bus.db``. Commands that write messages (``publish``, ``run``)
create it and its directory on first use; commands that look at what is there (``dlq``,
``store``, ``projections``) open an existing file only, and name the missing file instead of
leaving an empty database behind. Failures to reach or use the transport become one line on
stderr and exit status 1, with any password in the URL replaced by ``***`` (messages from broker
clients included).
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
from tidings.errors import NotFound, TidingsError
from tidings.urls import redact

__all__ = ["DEFAULT_URL", "Url", "open_bus", "require_database", "run", "scrub"]

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
        # soft_wrap: one line however long, so scripts can read it and paths stay whole
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(reason)}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _sqlite_file(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(parts.path[1:]) if parts.scheme == "sqlite" else None


def require_database(url: str) -> None:
    """Raise NotFound when ``url`` names a SQLite file that does not exist (other URLs pass)."""
    path = _sqlite_file(url)
    if path is not None and not path.is_file():
        raise NotFound(f"the SQLite database {str(path)!r} does not exist (check --url)")


@asynccontextmanager
async def open_bus(url: str, *, create: bool = True) -> AsyncIterator[Bus]:
    """A started bus on ``url``, with no subscriptions, closed on exit.

    With ``create`` a missing SQLite file is created, its directory too; without, a missing file
    raises NotFound (see :func:`require_database`) and nothing is created.
    """
    path = _sqlite_file(url)
    if not create:
        require_database(url)
    elif path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    async with Bus(url) as bus:
        yield bus
