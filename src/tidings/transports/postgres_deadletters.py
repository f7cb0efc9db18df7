"""Dead letters in a table of the PostgreSQL schema that the transport uses."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.deadletters import DeadLetter
from tidings.errors import NotFound
from tidings.transports.postgres_db import Database

__all__ = ["PostgresDeadLetterStore"]

_COLUMNS = (
    "id, message_id, topic, type, grp, data, headers, key, error_type, error_message, "
    "traceback, attempts, failed_at, published_at"
)
_encode_headers = msgspec.json.Encoder().encode
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode


class PostgresDeadLetterStore:
    """A :class:`~tidings.deadletters.DeadLetterStore` in table ``<schema>.dead_letters``.

    ``add`` commits before returning; ``list`` is oldest first (in the order letters were added).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert = db.sql(
            f"INSERT INTO {{s}}.dead_letters ({_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        )
        self._select = db.sql(f"SELECT {_COLUMNS} FROM {{s}}.dead_letters ")
        self._delete = db.sql("DELETE FROM {s}.dead_letters WHERE id = ANY($1::text[])")

    async def add(self, letter: DeadLetter) -> None:
        row = (
            letter.id, letter.message_id, letter.topic, letter.type, letter.group, letter.data,
            _encode_headers(letter.headers), letter.key, letter.error_type, letter.error_message,
            letter.traceback, letter.attempts, letter.failed_at, letter.published_at,
        )  # fmt: skip
        await self._db.run(lambda conn: conn.execute(self._insert, *row))

    async def list(
        self, *, topic: str | None = None, limit: int = 100
    ) -> builtins.list[DeadLetter]:
        if topic is None:
            rows = await self._fetch("ORDER BY n LIMIT $1", limit)
        else:
            rows = await self._fetch("WHERE topic = $1 ORDER BY n LIMIT $2", topic, limit)
        return [_letter(row) for row in rows]

    async def get(self, letter_id: str) -> DeadLetter:
        rows = await self._fetch("WHERE id = $1", letter_id)
        if not rows:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return _letter(rows[0])

    async def remove(self, letter_ids: Sequence[str]) -> int:
        if not letter_ids:
            return 0
        status = await self._db.run(lambda conn: conn.execute(self._delete, list(letter_ids)))
        return int(status.rsplit(" ", 1)[-1])

    async def _fetch(self, where: str, *args: Any) -> builtins.list[Any]:
        sql = self._select + where
        rows: builtins.list[Any] = await self._db.run(lambda conn: conn.fetch(sql, *args))
        return rows


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row[0], message_id=row[1], topic=row[2], type=row[3], group=row[4], data=row[5],
        headers=_decode_headers(row[6]), key=row[7], error_type=row[8], error_message=row[9],
        traceback=row[10], attempts=row[11], failed_at=row[12], published_at=row[13],
    )  # fmt: skip
