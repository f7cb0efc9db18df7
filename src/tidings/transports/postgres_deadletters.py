"""Dead letters in a table of the PostgreSQL schema that the transport uses."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from tidings.deadletters import DeadLetter
from tidings.errors import NotFound
from tidings.transports.kit.dead_letter_rows import COLUMNS, from_row, to_row
from tidings.transports.postgres_db import Database

__all__ = ["PostgresDeadLetterStore"]


class PostgresDeadLetterStore:
    """A :class:`~tidings.deadletters.DeadLetterStore` in table ``<schema>.dead_letters``.

    ``add`` commits before returning; ``list`` is oldest first (in the order letters were added).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._name = f"PostgreSQL dead letters {db.where} (schema {db.schema})"
        self._insert = db.sql(
            f"INSERT INTO {{s}}.dead_letters ({COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        )
        self._select = db.sql(f"SELECT {COLUMNS} FROM {{s}}.dead_letters ")
        self._delete = db.sql("DELETE FROM {s}.dead_letters WHERE id = ANY($1::text[])")

    async def add(self, letter: DeadLetter) -> None:
        # PostgreSQL text cannot hold NUL, which a foreign producer's key or an error message
        # may carry: a letter refused for it would bounce between handler and store for ever.
        row = [v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in to_row(letter)]
        await self._db.run(lambda conn: conn.execute(self._insert, *row))

    async def list(
        self, *, topic: str | None = None, limit: int = 100
    ) -> builtins.list[DeadLetter]:
        if topic is None:
            rows = await self._fetch("ORDER BY n LIMIT $1", limit)
        else:
            rows = await self._fetch("WHERE topic = $1 ORDER BY n LIMIT $2", topic, limit)
        return [from_row(row, self._name) for row in rows]

    async def get(self, letter_id: str) -> DeadLetter:
        rows = await self._fetch("WHERE id = $1", letter_id)
        if not rows:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return from_row(rows[0], self._name)

    async def remove(self, letter_ids: Sequence[str]) -> int:
        if not letter_ids:
            return 0
        status = await self._db.run(lambda conn: conn.execute(self._delete, list(letter_ids)))
        return int(status.rsplit(" ", 1)[-1])

    async def _fetch(self, where: str, *args: Any) -> builtins.list[Any]:
        sql = self._select + where
        rows: builtins.list[Any] = await self._db.run(lambda conn: conn.fetch(sql, *args))
        return rows
