"""The storage layout shared by the SQLite and PostgreSQL stores: one row per commit.

An append is stored as one row (a *commit*) holding all its events packed in one msgpack array,
keyed by the global position and the stream version of its **last** event, with the event count::

    position | stream_id | version | count | recorded_at | events (NULL once erased)

Positions and versions of the other events follow by counting back, so both stay contiguous.
Reading a stream of ten events written by one append touches one row instead of ten, and an append
writes one row and one index entry instead of ten: this is what puts the store ahead of a plain
row-per-event table (see docs/eventsourcing-store.md). Appends of more than
:data:`MAX_EVENTS_PER_COMMIT` events are split over several rows so that no row gets huge.

Rows are selected by the *last* position or version, so ``position > after`` (or
``version >= from``) finds exactly the rows holding a wanted event; the first row may also hold
earlier events, which :func:`unpack` skips.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from tidings.eventsourcing.store import NewEvent, RecordedEvent

__all__ = ["MAX_EVENTS_PER_COMMIT", "pack", "unpack"]

MAX_EVENTS_PER_COMMIT = 1000

_encoder = msgspec.msgpack.Encoder()
# NewEvent is array_like: each event is [type, data, id, metadata, schema_version]. Rows are
# decoded untyped (no per-field validation): only ``pack`` writes them, and it is 15% faster.
_decode = msgspec.msgpack.decode


def pack(events: Sequence[NewEvent]) -> list[tuple[int, bytes]]:
    """The events as ``(count, packed)`` chunks of at most MAX_EVENTS_PER_COMMIT each.

    Raises TypeError when an item is not a NewEvent.
    """
    for event in events:
        if type(event) is not NewEvent:
            raise TypeError(f"append takes NewEvent items, got {type(event).__qualname__}")
    size = MAX_EVENTS_PER_COMMIT
    if len(events) <= size:
        return [(len(events), _encoder.encode(events))]
    return [
        (len(chunk), _encoder.encode(chunk))
        for chunk in (events[i : i + size] for i in range(0, len(events), size))
    ]


def unpack(
    stream: str,
    version: int,
    position: int,
    count: int,
    recorded_at: datetime,
    packed: bytes,
) -> list[RecordedEvent]:
    """The recorded events of one commit row, oldest first.

    ``version`` and ``position`` are those of the row's last event. Raises msgspec.DecodeError
    for a corrupt row.
    """
    version -= count
    position -= count
    out: list[RecordedEvent] = []
    append = out.append
    for type_, data, id_, metadata, schema_version in _decode(packed):
        version += 1
        position += 1
        append(
            RecordedEvent(
                stream, version, position, type_, data, id_, metadata, schema_version, recorded_at
            )
        )
    return out
