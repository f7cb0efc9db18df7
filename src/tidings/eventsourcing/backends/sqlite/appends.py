"""Appends to the SQLite event store: the job each append runs in the writer's batch, and the
stream ids the store learns on the way.

A job checks the expected version before it writes (a refusal raises and leaves the batch's
other jobs alone, see :mod:`tidings.sql.sqlite_writer`), then stores one commit row per chunk of
events (:mod:`tidings.eventsourcing.backends.commits`). :meth:`Appends.begin` and
:meth:`Appends.committed` bracket each batch: ids of streams created in a batch are remembered
only once it committed (a rolled-back batch may give the id to another stream).
"""

from __future__ import annotations

import sqlite3
import time

from tidings.eventsourcing.backends.sqlite.sql import INSERT_COMMIT
from tidings.eventsourcing.store import NO_STREAM, ExpectedVersion, check_expected_version

__all__ = ["Appends"]

_STREAM_IDS_KEPT = 100_000


class Appends:
    """The running batch's appends, and stream names to row ids.

    A name's id never changes (a deleted stream keeps its row), so cached ids never go stale;
    the cache is only emptied to bound its size. Used on the loop, or in the writer's thread
    while the loop waits for the batch.
    """

    __slots__ = ("_new_ids", "_stream_ids", "position")

    def __init__(self) -> None:
        self._stream_ids: dict[str, int] = {}
        self._new_ids: list[tuple[str, int]] = []  # streams created by the running batch
        self.position: int | None = None
        """The last position assigned by the running batch (None: nothing appended)."""

    def begin(self) -> None:
        self.position = None
        self._new_ids = []

    def committed(self) -> None:
        if self._new_ids:
            self.remember(self._new_ids)
            self._new_ids = []

    def known(self, stream: str) -> int | None:
        return self._stream_ids.get(stream)

    def remember(self, ids: list[tuple[str, int]]) -> None:
        if len(self._stream_ids) + len(ids) > _STREAM_IDS_KEPT:
            self._stream_ids.clear()
        self._stream_ids.update(ids)

    def append(
        self,
        connection: sqlite3.Connection,
        stream: str,
        chunks: list[tuple[int, bytes]],
        expected: ExpectedVersion,
    ) -> int:
        """The job of one append: the stream's new version; raises ConcurrencyError or
        StreamDeleted before writing anything."""
        total = sum(count for count, _ in chunks)
        if total and (expected == NO_STREAM or expected == 0):
            # A new stream: try the insert first and look at the existing row only on conflict.
            try:
                cursor = connection.execute(
                    "INSERT INTO tidings_streams (name, version) VALUES (?, ?)", (stream, total)
                )
            except sqlite3.IntegrityError:
                pass
            else:
                return self._insert_commits(connection, self._created(stream, cursor), 0, chunks)
        row = connection.execute(
            "SELECT id, version, deleted FROM tidings_streams WHERE name = ?", (stream,)
        ).fetchone()
        if row is None:
            check_expected_version(stream, expected, None)
            if not total:
                return 0
            cursor = connection.execute(
                "INSERT INTO tidings_streams (name, version) VALUES (?, ?)", (stream, total)
            )
            return self._insert_commits(connection, self._created(stream, cursor), 0, chunks)
        stream_id, version, deleted = row
        check_expected_version(stream, expected, version, bool(deleted))
        if not total:
            return int(version)
        connection.execute(
            "UPDATE tidings_streams SET version = ? WHERE id = ?", (version + total, stream_id)
        )
        return self._insert_commits(connection, stream_id, version, chunks)

    def _created(self, stream: str, cursor: sqlite3.Cursor) -> int:
        stream_id = cursor.lastrowid or 0
        self._new_ids.append((stream, stream_id))
        return stream_id

    def _insert_commits(
        self,
        connection: sqlite3.Connection,
        stream_id: int,
        version: int,
        chunks: list[tuple[int, bytes]],
    ) -> int:
        now = time.time()
        for count, packed in chunks:
            version += count
            # The position is computed in the statement: max(position) is the rightmost key of
            # the table's b-tree, and the write lock makes it ours until the commit.
            cursor = connection.execute(
                INSERT_COMMIT, (count, stream_id, version, count, now, packed)
            )
        self.position = cursor.lastrowid
        return version
