"""Dead letters in a table of the PostgreSQL schema that the transport uses."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from tidings.dead_letters import PAGE_SIZE, DeadLetter
from tidings.errors import NotFound
from tidings.sql.postgres import Postgres
from tidings.transports.kit.dead_letter_rows import COLUMNS, from_row, to_row
from tidings.transports.postgres.wire import Schema

__all__ = ["PostgresDeadLetterStore"]


class PostgresDeadLetterStore:
    """A :class:`~tidings.dead_letters.DeadLetterStore` in table ``<schema>.dead_letters``.

    ``add`` commits before returning; ``list`` is oldest first (in the order letters were added,
    column ``n``, which is also where a page ``after`` a letter starts).
    """

    def __init__(self, db: Postgres, schema: Schema) -> None:
        self._db = db
        self._name = f"PostgreSQL dead letters {db.where} (schema {schema.name})"
        self._insert = schema.sql(
            f"INSERT INTO {{s}}.dead_letters ({COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        )
        self._select = schema.sql(f"SELECT {COLUMNS} FROM {{s}}.dead_letters ")
        self._position_of = schema.sql("SELECT n FROM {s}.dead_letters WHERE id = $1")
        self._delete = schema.sql("DELETE FROM {s}.dead_letters WHERE id = ANY($1::text[])")

    async def add(self, letter: DeadLetter) -> None:
        # PostgreSQL text cannot hold NUL, which a foreign producer's key or an error message
        # may carry: a letter refused for it would bounce between handler and store for ever.
        row = [v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in to_row(letter)]
        await self._db.run(
            lambda conn: conn.execute(self._insert, *row), doing="adding a dead letter"
        )

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        since = 0 if after is None else await self._position(after)
        if topic is None:
            rows = await self._fetch("WHERE n > $1 ORDER BY n LIMIT $2", since, limit)
        else:
            rows = await self._fetch(
                "WHERE topic = $1 AND n > $2 ORDER BY n LIMIT $3", topic, since, limit
            )
        return [from_row(row, self._name) for row in rows]

    async def get(self, letter_id: str) -> DeadLetter:
        rows = await self._fetch("WHERE id = $1", letter_id)
        if not rows:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return from_row(rows[0], self._name)

    async def remove(self, letter_ids: Sequence[str]) -> int:
        if not letter_ids:
            return 0
        status = await self._db.run(
            lambda conn: conn.execute(self._delete, list(letter_ids)), doing="removing dead letters"
        )
        return int(status.rsplit(" ", 1)[-1])

    async def _position(self, letter_id: str) -> int:
        position: int | None = await self._db.run(
            lambda conn: conn.fetchval(self._position_of, letter_id), doing="reading dead letters"
        )
        if position is None:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return position

    async def _fetch(self, where: str, *args: Any) -> builtins.list[Any]:
        sql = self._select + where
        rows: builtins.list[Any] = await self._db.run(
            lambda conn: conn.fetch(sql, *args), doing="reading dead letters"
        )
        return rows
