"""Group commit for SQLite: write jobs queued in one event-loop iteration share one transaction.

SQLite allows one writer at a time, and a short write transaction in WAL mode with
``synchronous=NORMAL`` takes tens of microseconds, less than handing it to a thread and back. So
jobs run directly on the event-loop thread, but not one by one: the first job queued yields to
the loop once, every task that was ready meanwhile queues its own, and then the first one runs
them all in one transaction. Under load one ``COMMIT`` (and, with ``synchronous=FULL``, one
fsync) serves many appends; a lone append costs one loop iteration more than a direct call.

Each job is atomic on its own although it shares the transaction: a job checks everything that
can fail for a reason of its own (a version conflict, a deleted stream) before it writes, and
reports that failure by raising :class:`~tidings.TidingsError`; the batch carries on. Any other
exception rolls the whole batch back; the failing job gets the exception and the others run
again in the next batch. A failed ``BEGIN`` or ``COMMIT`` fails every job of the batch with
:class:`~tidings.TransportError`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from tidings.errors import ClosedError, TidingsError, TransportError

__all__ = ["GroupCommitWriter", "Job"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

_MAX_BATCH = 1000
"""Jobs per transaction: bounds how long one batch holds the event loop."""


class GroupCommitWriter:
    """Runs write jobs on ``connection`` (autocommit mode) in batched transactions.

    ``begin`` runs after each ``BEGIN``, ``committed`` after each successful ``COMMIT``.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        begin: Callable[[], None] = lambda: None,
        committed: Callable[[], None] = lambda: None,
    ) -> None:
        self.connection = connection
        self._begin = begin
        self._committed = committed
        self._pending: list[tuple[Job[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._in_transaction = False  # a caller's transaction() holds the connection
        self._owner: asyncio.Task[Any] | None = None  # the task running that transaction
        self._transaction_lock = asyncio.Lock()
        self._closed = False

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` in the next batch; returns its result once that batch committed."""
        if self._closed:
            raise ClosedError("the event store is closed")
        if self._in_transaction and asyncio.current_task() is self._owner:
            raise RuntimeError(
                "a store write inside store.transaction() would wait for the transaction to end;"
                " write through the transaction instead"
            )
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        pending = self._pending
        pending.append((job, future))
        if len(pending) > 1 or self._scheduled or self._in_transaction:
            return await future  # a batch is forming: its leader (or the transaction) flushes
        # The first job leads the batch: yield once so that every task ready to run queues its
        # job too, then run them all. One loop iteration, not two as with awaiting a callback.
        self._scheduled = True
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            asyncio.get_running_loop().call_soon(self._flush)  # the others still need it
            raise
        if self._transaction_running():  # one began meanwhile; its end flushes
            self._scheduled = False
            return await future
        self._flush()
        return await future  # already done, unless the batch was split (_MAX_BATCH)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        """Hold the connection in a transaction of the caller's; queued jobs wait for its end.

        Commits when the block ends, rolls back when it raises.
        """
        async with self._transaction_lock:
            if self._closed:
                raise ClosedError("the event store is closed")
            # No batch is half done here: batches run synchronously, within one callback.
            connection = self.connection
            self._in_transaction = True
            self._owner = asyncio.current_task()
            try:
                _execute(connection, "BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.rollback()
                    raise
                try:
                    connection.execute("COMMIT")
                except sqlite3.Error as exc:
                    connection.rollback()
                    raise TransportError(f"SQLite commit failed: {exc}") from exc
                self._committed()
            finally:
                self._in_transaction = False
                self._owner = None
                if self._pending and not self._scheduled:
                    self._scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush)

    def _transaction_running(self) -> bool:
        return self._in_transaction

    def close(self) -> None:
        """Run what is queued (unless a transaction holds the connection), then refuse jobs."""
        if not self._in_transaction:
            while self._pending:
                self._flush()
        self._closed = True
        for _, future in self._pending:
            if not future.done():
                future.set_exception(ClosedError("the event store closed before this write"))
        self._pending = []

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_transaction or not self._pending:
            return
        batch = self._pending[:_MAX_BATCH]
        del self._pending[:_MAX_BATCH]
        if self._pending:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        connection = self.connection
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _fail(batch, TransportError(f"SQLite could not begin a write: {exc}"), exc)
            return
        self._begin()
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for index, (job, future) in enumerate(batch):
            try:
                outcomes.append((future, job(connection), None))
            except TidingsError as exc:  # refused before writing anything
                outcomes.append((future, None, exc))
            except Exception as exc:
                connection.rollback()
                error: BaseException = exc
                if isinstance(exc, sqlite3.Error):
                    error = TransportError(f"SQLite write failed: {exc}")
                    error.__cause__ = exc
                if not future.done():
                    future.set_exception(error)
                self._retry(batch[:index] + batch[index + 1 :])
                return
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            connection.rollback()
            _fail(batch, TransportError(f"SQLite commit failed: {exc}"), exc)
            return
        self._committed()
        for future, result, refusal in outcomes:
            if future.done():  # the awaiting task was cancelled; the write stands
                continue
            if refusal is None:
                future.set_result(result)
            else:
                future.set_exception(refusal)

    def _retry(self, jobs: list[tuple[Job[Any], asyncio.Future[Any]]]) -> None:
        self._pending[:0] = jobs
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)


def _execute(connection: sqlite3.Connection, sql: str) -> None:
    try:
        connection.execute(sql)
    except sqlite3.Error as exc:
        raise TransportError(f"SQLite {sql} failed: {exc}") from exc


def _fail(
    batch: list[tuple[Job[Any], asyncio.Future[Any]]], error: TransportError, cause: Exception
) -> None:
    error.__cause__ = cause
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
