"""Dead letters as rows of a SQL table, the same for the SQLite and PostgreSQL transports.

A row holds the fields of :class:`~tidings.deadletters.DeadLetter` in the order of
:data:`COLUMNS`; ``grp`` is the column of ``group`` (a reserved word in SQL), and the headers are
stored as JSON bytes. The tables also have a column ``n`` that keeps the order letters were
added in.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.deadletters import DeadLetter

__all__ = ["COLUMNS", "from_row", "to_row"]

COLUMNS = (
    "id, message_id, topic, type, grp, data, headers, key, error_type, error_message, "
    "traceback, attempts, failed_at, published_at"
)

_encode_headers = msgspec.json.Encoder().encode
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode


def to_row(letter: DeadLetter) -> tuple[Any, ...]:
    """The values of :data:`COLUMNS` for ``letter``."""
    return (
        letter.id, letter.message_id, letter.topic, letter.type, letter.group, letter.data,
        _encode_headers(letter.headers), letter.key, letter.error_type, letter.error_message,
        letter.traceback, letter.attempts, letter.failed_at, letter.published_at,
    )  # fmt: skip


def from_row(row: Any) -> DeadLetter:
    """The letter whose :data:`COLUMNS` values ``row`` holds (a tuple or a database record)."""
    (id_, message_id, topic, type_, group, data, headers, key, error_type, error_message,
     traceback, attempts, failed_at, published_at) = row  # fmt: skip
    return DeadLetter(
        id=id_, message_id=message_id, topic=topic, type=type_, group=group, data=data,
        headers=_decode_headers(headers), key=key, error_type=error_type,
        error_message=error_message, traceback=traceback, attempts=attempts,
        failed_at=failed_at, published_at=published_at,
    )  # fmt: skip
