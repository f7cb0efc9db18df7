"""Dead letters as rows of a SQL table, the same for the SQLite and PostgreSQL transports.

A row holds the fields of :class:`~tidings.dead_letters.DeadLetter` in the order of
:data:`COLUMNS`; ``grp`` is the column of ``group`` (a reserved word in SQL), and the headers are
stored as JSON bytes. The tables also have a column ``n`` that keeps the order letters were
added in. A row whose values do not fit the fields reads as an
:func:`~tidings.dead_letters.unreadable_letter` stand-in, so one damaged row never hides the rest.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.dead_letters import DeadLetter, unreadable_letter
from tidings.errors import CorruptRecord

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


def from_row(row: Any, store: str) -> DeadLetter:
    """The letter whose :data:`COLUMNS` values ``row`` (a tuple or a database record) of
    ``store`` holds, each checked against its field's type; or the letter's unreadable
    stand-in."""
    (id_, message_id, topic, type_, group, data, headers, key, error_type, error_message,
     traceback, attempts, failed_at, published_at) = row  # fmt: skip
    try:
        return msgspec.convert(
            {
                "id": id_, "message_id": message_id, "topic": topic, "type": type_,
                "group": group, "data": data, "headers": _decode_headers(headers), "key": key,
                "error_type": error_type, "error_message": error_message,
                "traceback": traceback, "attempts": attempts, "failed_at": failed_at,
                "published_at": published_at,
            },
            DeadLetter,
        )  # fmt: skip
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
        return unreadable_letter(str(id_), CorruptRecord(store, f"dead letter {id_!r}", f"{exc}"))
