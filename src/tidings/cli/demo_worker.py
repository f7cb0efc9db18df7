"""A worker process of ``tidings demo --workers N``: the signup flow, reporting what it does.

The demo runs N processes of ``tidings run tidings.cli.demo_worker:create_bus`` under a
:class:`~tidings.cli.supervisor.Supervisor` (:mod:`tidings.cli.demo_workers`). Each builds the
signup flow on the URL in ``TIDINGS_DEMO_URL`` with its preferences in the directory
``TIDINGS_DEMO_DIR``, and writes a :class:`Report` for each handler call and each dead letter,
one JSON line, to the file descriptor ``TIDINGS_DEMO_REPORT`` (a pipe the demo reads). A line
is one write shorter than the pipe's atomic size, so the lines of several workers never mix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

import tidings
from tidings.dead_letters import DeadLetter
from tidings.message import Message
from tidings.middleware import Handler, Middleware
from tidings.testing.dead_letters import RecordingDeadLetters
from tidings.transports import from_url

__all__ = ["DIR_ENV", "REPORT_ENV", "URL_ENV", "Report", "create_bus"]

URL_ENV = "TIDINGS_DEMO_URL"
DIR_ENV = "TIDINGS_DEMO_DIR"
REPORT_ENV = "TIDINGS_DEMO_REPORT"
_LONGEST_ERROR = 300
"""Characters of an error message a report carries: a line stays well below 4 KiB (PIPE_BUF)."""


class Report(msgspec.Struct, frozen=True):
    """One handler call of a worker (``handled`` or ``failed``), or one of its dead letters."""

    worker: int
    group: str
    message_id: str
    outcome: Literal["handled", "failed", "dead"]
    error_type: str = ""
    error_message: str = ""


Write = Callable[[Report], None]


def _writer(fd: int) -> Write:
    def write(report: Report) -> None:
        os.write(fd, msgspec.json.encode(report) + b"\n")

    return write


def _reporting(write: Write, worker: int) -> Middleware:
    """Report each call of the handler it wraps: handled when it returned, failed when not."""

    def wrap(handler: Handler) -> Handler:
        async def call(message: Message) -> None:
            current = tidings.current()
            group = current.group if current is not None else ""
            try:
                await handler(message)
            except BaseException:
                write(Report(worker, group, message.id, "failed"))
                raise
            write(Report(worker, group, message.id, "handled"))

        return call

    return wrap


class _ReportedDeadLetters(RecordingDeadLetters):
    """The transport's dead-letter store, reporting each letter added."""

    def __init__(self, store: tidings.DeadLetterStore, write: Write, worker: int) -> None:
        super().__init__(store)
        self._write = write
        self._worker = worker

    async def add(self, letter: DeadLetter) -> None:
        await super().add(letter)
        text = letter.error_message[:_LONGEST_ERROR]
        self._write(
            Report(self._worker, letter.group, letter.message_id, "dead", letter.error_type, text)
        )


def create_bus() -> tidings.Bus:
    """The signup flow of one demo worker; see the module docstring. Raises KeyError outside
    ``tidings demo --workers``."""
    from tidings.examples import signup

    transport = from_url(os.environ[URL_ENV])
    write = _writer(int(os.environ[REPORT_ENV]))
    worker = tidings.worker_id() or 0
    return signup.build(
        transport,
        preferences_db=Path(os.environ[DIR_ENV]) / "preferences.db",
        dead_letters=_ReportedDeadLetters(transport.dead_letters(), write, worker),
        middleware=[_reporting(write, worker)],
    ).bus
