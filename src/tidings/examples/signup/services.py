"""The three services that react to a signup.

Each is an ordinary class with a handler method; ``app.py`` subscribes them. They are written for
at-least-once delivery: a redelivered signup changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import tidings

from .events import UserSignedUp

__all__ = [
    "FLAKY_EVERY",
    "AuditEntry",
    "AuditLog",
    "EmailService",
    "InvalidAddress",
    "MailServerBusy",
    "Preferences",
]

T = TypeVar("T")

FLAKY_EVERY = 7
"""The mail server refuses the first attempt for every 7th user: retries make it through."""


class InvalidAddress(ValueError):
    """The address cannot receive mail: trying again cannot help."""


class MailServerBusy(ConnectionError):
    """The mail server refused for now: a later attempt succeeds."""


class EmailService:
    """Sends welcome mails through a simulated mail server.

    Every call takes ``latency`` seconds, so many must run at once to keep up. An address without
    "@" raises :class:`InvalidAddress` at once; the first attempt for every 7th user raises
    :class:`MailServerBusy` after the wait (the message's first delivery when a bus calls it, so
    that a retry succeeds in whichever worker process it lands). A user who already got the mail
    from this process is not sent another.
    """

    def __init__(self, latency: float = 0.1) -> None:
        self.latency = latency
        self.sent: dict[int, str] = {}
        """User id to the address the welcome mail went to."""
        self.attempts: Counter[int] = Counter()
        """Calls per user id, successful or not."""

    async def send_welcome(self, event: UserSignedUp) -> None:
        if event.user_id in self.sent:
            return
        self.attempts[event.user_id] += 1
        if "@" not in event.email:
            raise InvalidAddress("the address has no '@'")
        await asyncio.sleep(self.latency)  # the mail server's round trip
        handling = tidings.current()
        attempt = handling.attempt if handling is not None else self.attempts[event.user_id]
        if event.user_id % FLAKY_EVERY == 0 and attempt == 1:
            raise MailServerBusy("421 mail server busy, try again later")
        self.sent[event.user_id] = event.email

    @property
    def retried(self) -> int:
        """How many calls were retries of a failed call."""
        return sum(calls - 1 for calls in self.attempts.values())


@dataclass(frozen=True, slots=True)
class AuditEntry:
    message_id: str
    correlation_id: str
    user_id: int
    email: str


class AuditLog:
    """Keeps one entry per signup message, in memory.

    Its handler is a plain function taking the whole Message (for the ids in its envelope): quick
    work needs no ``async``. Entries are keyed by message id, so a redelivery adds nothing.
    """

    def __init__(self) -> None:
        self.entries: dict[str, AuditEntry] = {}

    def record(self, message: tidings.Message) -> None:
        event: UserSignedUp = message.data
        correlation = message.headers.get(tidings.CORRELATION_ID, message.id)
        entry = AuditEntry(message.id, correlation, event.user_id, event.email)
        self.entries.setdefault(message.id, entry)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS preferences (
    user_id INTEGER PRIMARY KEY,
    newsletter INTEGER NOT NULL,
    digest TEXT NOT NULL,
    theme TEXT NOT NULL
)
"""
_INSERT = (
    "INSERT INTO preferences (user_id, newsletter, digest, theme) VALUES (?, 1, 'weekly', 'light') "
    "ON CONFLICT (user_id) DO NOTHING"
)


class Preferences:
    """Default preferences for each new user, in the SQLite table ``preferences`` at ``path``.

    The connection opens on first use and lives on one thread of its own: the event loop never
    waits on the disk, and no two threads share the connection. A user who already has a row keeps
    it (``ON CONFLICT DO NOTHING``). ``created`` counts the rows this object inserted.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.created = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preferences")
        self._conn: sqlite3.Connection | None = None

    async def create_defaults(self, event: UserSignedUp) -> None:
        if await self._run(self._insert, event.user_id):
            self.created += 1

    async def count(self) -> int:
        """How many users have preferences in the table."""
        return await self._run(self._count)

    async def aclose(self) -> None:
        """Close the connection and the thread. Idempotent."""
        await self._run(self._close)
        self._thread.shutdown()

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path)
            # WAL with synchronous=NORMAL commits without waiting for the disk each time; a
            # crash of the process loses nothing committed (a power cut may lose the last ones).
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        return self._conn

    def _insert(self, user_id: int) -> bool:
        conn = self._connection()
        with conn:  # one transaction, committed on leaving
            inserted = conn.execute(_INSERT, (user_id,)).rowcount
        return inserted == 1

    def _count(self) -> int:
        row = self._connection().execute("SELECT count(*) FROM preferences").fetchone()
        return int(row[0])

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
