"""Group commit for PostgreSQL: concurrent appends of one process share one round trip and commit.

Appends commit one at a time (they hold the head row until commit, see :mod:`.store`), so a
process with many concurrent appenders would wait for one commit per append. Instead, appends
queued while a batch is in flight wait for it to finish and then go together in one call of
``tidings_append_many``: one round trip, one commit, one WAL flush for all of them. Each append
is still checked and applied on its own, in queue order (a conflict refuses that append only); a
failed call fails every append of its batch.
A lone append costs one event-loop iteration more than calling ``tidings_append`` directly.
"""

from __future__ import annotations

import asyncio

from tidings.errors import ClosedError
from tidings.eventsourcing.backends.postgres.sql import APPEND_MANY
from tidings.sql.postgres import Postgres

__all__ = ["AppendBatcher", "Outcome"]

Outcome = tuple[int, int | None]
"""(status, version) as returned by ``tidings_append``."""

_MAX_BATCH = 500


class AppendBatcher:
    """Queues single-row appends and runs them in batches, one batch in flight at a time."""

    def __init__(self, db: Postgres) -> None:
        self._db = db
        self._queue: list[tuple[str, int, int, bytes, asyncio.Future[Outcome]]] = []
        self._busy = False  # a batch is forming or in flight
        self._drainer: asyncio.Task[None] | None = None

    async def append(self, stream: str, expected: int, count: int, packed: bytes) -> Outcome:
        """Append one commit row; ``expected`` is coded as for ``tidings_append``."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((stream, expected, count, packed, future))
        if self._busy:
            return await future
        # Lead the first batch from the calling task (no task to create for a lone append);
        # appends arriving while it is in flight are drained by a task.
        self._busy = True
        try:
            await asyncio.sleep(0)  # let every appender that is ready join this batch
            await self._run(self._take())
        finally:
            if self._queue:
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._busy = False
        return await future

    def _take(self) -> list[tuple[str, int, int, bytes, asyncio.Future[Outcome]]]:
        batch = self._queue[:_MAX_BATCH]
        del self._queue[:_MAX_BATCH]
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._run(self._take())
        finally:
            self._busy = False
            self._drainer = None
            queued, self._queue = self._queue, []  # left only when the drain was cancelled
            for *_, future in queued:
                if not future.done():
                    future.set_exception(ClosedError("the event store closed before this append"))

    async def _run(self, batch: list[tuple[str, int, int, bytes, asyncio.Future[Outcome]]]) -> None:
        try:
            with self._db.errors.mapping("appending"):
                rows = await self._db.pool.fetch(
                    APPEND_MANY,
                    [item[0] for item in batch],
                    [item[1] for item in batch],
                    [item[2] for item in batch],
                    [item[3] for item in batch],
                )
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), (status, version, _) in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result((status, version))
