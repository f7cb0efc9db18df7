"""Dead letters in a table of the SQLite file that the transport uses (``tidings_dead_letters``)."""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Sequence
from typing import Any

from tidings.dead_letters import PAGE_SIZE, DeadLetter
from tidings.errors import NotFound
from tidings.sql.sqlite import Database
from tidings.transports.kit.dead_letter_rows import COLUMNS, from_row, to_row
from tidings.transports.sqlite.wire import open_file

__all__ = ["SqliteDeadLetterStore"]


class SqliteDeadLetterStore:
    """A :class:`~tidings.dead_letters.DeadLetterStore` in table ``tidings_dead_letters``.

    Give it the transport's database, or the path of a file (``events.db``) to open on its own;
    then :meth:`aclose` closes it. ``add`` commits before returning;
    ``list`` is oldest first (in the order letters were added, column ``n``, which is also
    where a page ``after`` a letter starts).
    """

    def __init__(self, db: Database | str) -> None:
        if isinstance(db, str):
            self._db, self._owned = open_file(db), True
        else:
            self._db, self._owned = db, False
        self._name = f"SQLite dead letters {self._db.path!r}"

    async def add(self, letter: DeadLetter) -> None:
        row = to_row(letter)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO tidings_dead_letters ({COLUMNS}) VALUES "
                         "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)  # fmt: skip

        await self._db.write(insert)

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        since = 0 if after is None else await self._position(after)
        if topic is None:
            rows = await self._select("WHERE n > ? ORDER BY n LIMIT ?", (since, limit))
        else:
            rows = await self._select(
                "WHERE topic = ? AND n > ? ORDER BY n LIMIT ?", (topic, since, limit)
            )
        return [from_row(row, self._name) for row in rows]

    async def _position(self, letter_id: str) -> int:
        await self._db.open()
        rows = self._db.query("SELECT n FROM tidings_dead_letters WHERE id = ?", (letter_id,))
        if not rows:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return int(rows[0][0])

    async def get(self, letter_id: str) -> DeadLetter:
        rows = await self._select("WHERE id = ?", (letter_id,))
        if not rows:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return from_row(rows[0], self._name)

    async def remove(self, letter_ids: Sequence[str]) -> int:
        ids = [(letter_id,) for letter_id in letter_ids]

        def delete(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany("DELETE FROM tidings_dead_letters WHERE id = ?", ids)
            return conn.total_changes - before

        return await self._db.write(delete) if ids else 0

    async def aclose(self) -> None:
        """Close the file if this store opened it."""
        if self._owned:
            await self._db.aclose()

    async def _select(self, where: str, params: tuple[Any, ...]) -> builtins.list[tuple[Any, ...]]:
        await self._db.open()
        return self._db.query(f"SELECT {COLUMNS} FROM tidings_dead_letters {where}", params)
