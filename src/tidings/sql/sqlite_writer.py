"""Group commit on one SQLite connection: the writes queued in one loop iteration share one
transaction, and a file locked by another connection is waited for in a thread.

SQLite allows one writer at a time, and a short write transaction in WAL mode with
``synchronous=NORMAL`` takes tens of microseconds, less than handing it to a thread and back. So
jobs run on the event-loop thread, but not one by one: the first job queued yields to the loop
once, every task that was ready meanwhile queues its own, and then they all run in one
transaction. Under load one ``COMMIT`` (and, with ``synchronous=FULL``, one fsync) serves many
writes; a lone write costs one loop iteration more than a direct call.

On the loop the connection never waits for a lock (``busy_timeout`` 0). When another connection
(another process, a backup, a ``VACUUM``) holds the write lock, the batch is rolled back and run
again in the database's thread, which waits for the lock in slices of :data:`_SLICE` seconds;
new jobs queue meanwhile. After ``busy_timeout`` seconds the batch fails with
:class:`~tidings.errors.ServiceUnavailable`, nothing of it written. A job whose caller was
cancelled before it ran is skipped; once it ran, its write stands.

Each job is atomic on its own although it shares the transaction: a job checks everything that
can fail for a reason of its own (a version conflict, a deleted stream) before it writes, and
reports that failure by raising :class:`~tidings.TidingsError`; the batch carries on. Any other
exception rolls the whole batch back; the failing job gets it (a sqlite3 error as
:class:`~tidings.TransportError`) and the others run again in the next batch. A failed ``BEGIN``
or ``COMMIT`` fails every job of the batch with :class:`~tidings.TransportError`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Protocol, TypeVar

from tidings.errors import ClosedError, ServiceUnavailable, TidingsError, TransportError

__all__ = ["Job", "OffLoop", "Writer", "is_busy"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

_MAX_BATCH = 1000
"""Jobs per transaction: bounds how long one batch holds the event loop."""
_SLICE = 0.5
"""Most seconds one wait for another connection's write lock blocks the thread."""
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

_Entry = tuple[Job[Any], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class OffLoop(Protocol):
    """Runs a function in the database's thread."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


class _Busy(Exception):
    """Another connection holds the write lock; what was begun is rolled back."""


class _Done:
    """What a batch came to: whether it committed, the results to hand out, the jobs to requeue."""

    __slots__ = ("committed", "outcomes", "requeue")

    def __init__(
        self, committed: bool, outcomes: list[_Outcome], requeue: list[_Entry] | None = None
    ) -> None:
        self.committed = committed
        self.outcomes = outcomes
        self.requeue = requeue or []


def is_busy(exc: BaseException) -> bool:
    """Whether another connection holds the lock (extended codes like BUSY_RECOVERY too)."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _BUSY


class Writer:
    """Runs write jobs on ``connection`` (autocommit mode, busy timeout 0) in batched
    transactions. ``begin`` runs after each ``BEGIN``, ``committed`` after each ``COMMIT``
    (on the loop); ``name`` says what the file is in errors. Not thread-safe: one event loop."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        name: str,
        busy_timeout: float,
        off_loop: OffLoop,
        begin: Callable[[], None] = lambda: None,
        committed: Callable[[], None] = lambda: None,
    ) -> None:
        self.connection = connection
        self._name = name
        self._busy_timeout = busy_timeout
        self._off_loop = off_loop
        self._begin = begin
        self._committed = committed
        self._pending: list[_Entry] = []
        self._scheduled = False
        self._waiting: asyncio.Task[None] | None = None  # a batch waiting for the lock
        self._held = False  # a caller's block holds the connection
        self._owner: asyncio.Task[Any] | None = None  # the task holding it
        self._turn = asyncio.Lock()  # callers' blocks, one at a time
        self._closed = False

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` in the next batch; returns its result once that batch committed."""
        if self._closed:
            raise ClosedError(f"{self._name} is closed")
        if self._held and asyncio.current_task() is self._owner:
            raise RuntimeError(
                f"a write to {self._name} inside store.transaction() would wait for the"
                " transaction to end; write through the transaction instead"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((job, future))
        if len(self._pending) > 1 or self._scheduled or self._held or self._waiting is not None:
            return await future  # a batch is forming: its leader (or whoever holds it) flushes
        # The first job leads the batch: yield once so that every task ready to run queues its
        # job too, then run them all. One loop iteration, not two as with awaiting a callback.
        self._scheduled = True
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            loop.call_soon(self._flush)  # the others still need it
            raise
        self._flush()
        return await future  # done, unless the batch waits for the lock or was split

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        """Hold the connection in a transaction of the caller's; queued jobs wait for its end.

        Commits when the block ends, rolls back when it raises. Raises ServiceUnavailable when
        another connection held the write lock for ``busy_timeout`` seconds.
        """
        async with self._holding() as connection:
            try:
                await self._begin_patiently(connection)
                self._begin()
                yield connection
                try:
                    connection.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise TransportError(f"{self._name}: commit failed: {exc}") from exc
            finally:
                if connection.in_transaction:
                    connection.rollback()
            self._committed()

    async def outside(self, fn: Job[T]) -> T:
        """``fn(connection)`` between batches, outside any transaction: for statements that
        cannot run in one (``PRAGMA incremental_vacuum``). Never waits for a lock: raises
        ServiceUnavailable at once while another connection holds it."""
        async with self._holding() as connection:
            try:
                return fn(connection)
            except sqlite3.Error as exc:
                if is_busy(exc):
                    raise ServiceUnavailable(f"{self._name} is locked: {exc}") from exc
                raise TransportError(f"{self._name}: {exc}") from exc

    async def aclose(self) -> None:
        """Write what is queued (waiting for the lock as usual), then refuse jobs."""
        async with self._turn:
            while self._pending or self._waiting is not None:
                if self._waiting is not None:
                    await asyncio.shield(self._waiting)
                else:
                    self._flush()
            self._closed = True

    @asynccontextmanager
    async def _holding(self) -> AsyncIterator[sqlite3.Connection]:
        """The connection for the caller alone: no batch runs until the block ends."""
        async with self._turn:
            if self._closed:
                raise ClosedError(f"{self._name} is closed")
            while self._waiting is not None:  # batches run within one callback, or in that task
                await asyncio.shield(self._waiting)
            self._held, self._owner = True, asyncio.current_task()
            try:
                yield self.connection
            finally:
                self._held, self._owner = False, None
                self._schedule()

    async def _begin_patiently(self, connection: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, waiting for the lock in the thread if another connection has it."""
        deadline = time.monotonic() + self._busy_timeout
        begin = partial(_begin, connection)
        try:
            begin()
            return
        except _Busy:
            pass
        except sqlite3.Error as exc:
            raise TransportError(f"{self._name}: could not begin a write: {exc}") from exc
        while True:
            wait = max(min(deadline - time.monotonic(), _SLICE), 0.0)
            try:
                await self._off_loop(partial(self._waiting_for_lock, begin, wait))
                return
            except _Busy as exc:
                if time.monotonic() >= deadline:
                    raise self._locked(exc.__cause__) from exc.__cause__
            except sqlite3.Error as exc:
                raise TransportError(f"{self._name}: could not begin a write: {exc}") from exc

    def _schedule(self) -> None:
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._held or self._waiting is not None or not self._pending:
            return  # whoever holds the connection schedules the next flush
        batch = self._pending[:_MAX_BATCH]
        del self._pending[:_MAX_BATCH]
        self._schedule()
        try:
            done = self._execute(batch)
        except _Busy:
            self._waiting = asyncio.get_running_loop().create_task(self._wait_for_lock(batch))
            return
        self._finish(done)

    async def _wait_for_lock(self, batch: list[_Entry]) -> None:
        """Run ``batch`` in the thread as soon as the lock is free, for ``busy_timeout``."""
        deadline = time.monotonic() + self._busy_timeout
        try:
            while batch:
                wait = max(min(deadline - time.monotonic(), _SLICE), 0.0)
                try:
                    run = partial(self._execute, batch)
                    done = await self._off_loop(partial(self._waiting_for_lock, run, wait))
                except _Busy as exc:
                    batch = [entry for entry in batch if not entry[1].done()]
                    if time.monotonic() >= deadline:
                        error = self._locked(exc.__cause__)
                        self._finish(_Done(False, [(f, None, error) for _, f in batch]))
                        return
                    continue
                self._finish(done)
                return
        except asyncio.CancelledError:
            closed = ClosedError(f"{self._name} closed before this write")
            self._finish(_Done(False, [(f, None, closed) for _, f in batch]))
            raise
        finally:
            self._waiting = None
            self._schedule()

    def _waiting_for_lock(self, fn: Callable[[], T], wait: float) -> T:
        """``fn()`` in the thread, waiting up to ``wait`` seconds for the lock."""
        connection = self.connection
        connection.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        try:
            return fn()
        finally:
            connection.execute("PRAGMA busy_timeout = 0")

    def _execute(self, batch: list[_Entry]) -> _Done:
        """Run ``batch`` in one transaction (on the loop or in the thread); raises _Busy, rolled
        back, when another connection holds the lock."""
        connection = self.connection
        try:
            _begin(connection)  # in the thread, this is where the lock is waited for
        except sqlite3.Error as exc:
            return _Done(False, self._failed(batch, "could not begin a write", exc))
        # Callers that gave up meanwhile are skipped. Reading a future's state from the thread
        # is safe: only the loop changes it, and a job run although its caller was cancelled a
        # moment ago is the same to that caller as one that ran just before.
        live = [entry for entry in batch if not entry[1].done()]
        if not live:
            connection.rollback()
            return _Done(False, [])
        self._begin()
        outcomes: list[_Outcome] = []
        for index, (job, future) in enumerate(live):
            try:
                outcomes.append((future, job(connection), None))
            except TidingsError as exc:  # refused before writing anything
                outcomes.append((future, None, exc))
            except Exception as exc:
                connection.rollback()
                if is_busy(exc):
                    raise _Busy from exc
                error: BaseException = exc
                if isinstance(exc, sqlite3.Error):
                    error = TransportError(f"{self._name}: write failed: {exc}")
                    error.__cause__ = exc
                return _Done(False, [(future, None, error)], live[:index] + live[index + 1 :])
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            connection.rollback()
            if is_busy(exc):
                raise _Busy from exc
            return _Done(False, self._failed(live, "commit failed", exc))
        return _Done(True, outcomes)

    def _finish(self, done: _Done) -> None:
        """On the loop: the hook, the results, and the jobs to run again."""
        if done.committed:
            self._committed()
        for future, result, error in done.outcomes:
            if future.done():  # the caller was cancelled; the write stands
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        self._pending[:0] = done.requeue
        self._schedule()

    def _failed(self, batch: list[_Entry], doing: str, cause: sqlite3.Error) -> list[_Outcome]:
        error = TransportError(f"{self._name}: {doing}: {cause}")
        error.__cause__ = cause
        return [(future, None, error) for _, future in batch]

    def _locked(self, cause: BaseException | None) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"{self._name} stayed locked by another connection for {self._busy_timeout:g}s: {cause}"
        )


def _begin(connection: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``: the write lock up front, so a busy file fails here, before any work,
    and the whole batch can be run again elsewhere. Raises _Busy."""
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        if is_busy(exc):
            raise _Busy from exc
        raise
