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

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from tidings.eventsourcing.store import NewEvent, RecordedEvent, StreamInfo

__all__ = [
    "MAX_EVENTS_PER_COMMIT",
    "PAGE",
    "backward_page",
    "forward_page",
    "log_page",
    "pack",
    "stream_info_of",
    "unpack",
]

MAX_EVENTS_PER_COMMIT = 1000
PAGE = 256
"""Commit rows per query. Backends fetch whole pages, so no statement stays open while a caller
iterates (on SQLite an open statement would pin its snapshot)."""

ToTime = Callable[[Any], datetime]
"""Turns a row's ``recorded_at`` into an aware datetime (the identity where the driver does)."""

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


# The readers below slice pages of commit rows into events. Each takes the rows of one query and
# ``left``, the events still wanted (-1: no limit), and returns the events and where the next
# page starts; a page shorter than PAGE rows was the last.


def forward_page(
    stream: str, rows: Sequence[Any], start: int, left: int, to_time: ToTime
) -> tuple[list[RecordedEvent], int, int]:
    """Rows ``(version, position, count, recorded_at, events)`` of one stream in version order:
    the events from version ``start``, the next ``start`` and ``left``."""
    out: list[RecordedEvent] = []
    for version, position, count, recorded_at, packed in rows:
        events = unpack(stream, version, position, count, to_time(recorded_at), packed)
        first = version - count + 1
        if first < start:  # only the first row can begin before ``start``
            events = events[start - first :]
        if 0 <= left < len(events):
            events = events[:left]
        out += events
        left -= len(events)
        start = version + 1
        if not left:
            break
    return out, start, left


def backward_page(
    stream: str, rows: Sequence[Any], below: int, left: int, to_time: ToTime
) -> tuple[list[RecordedEvent], int, int]:
    """Rows of one stream in reverse version order: the events from version ``below`` down, the
    next ``below`` and ``left``."""
    out: list[RecordedEvent] = []
    for version, position, count, recorded_at, packed in rows:
        events = unpack(stream, version, position, count, to_time(recorded_at), packed)
        events.reverse()
        if version > below:
            events = events[version - below :]
        if 0 <= left < len(events):
            events = events[:left]
        out += events
        left -= len(events)
        below = version - count
        if not left:
            break
    return out, below, left


def log_page(
    rows: Sequence[Any], after: int, left: int, to_time: ToTime
) -> tuple[list[RecordedEvent], int, int]:
    """Rows ``(stream, version, position, count, recorded_at, events)`` in position order: the
    events after position ``after``, the next ``after`` and ``left``."""
    out: list[RecordedEvent] = []
    for stream, version, position, count, recorded_at, packed in rows:
        events = unpack(stream, version, position, count, to_time(recorded_at), packed)
        first = position - count + 1
        if first <= after:
            events = events[after - first + 1 :]
        if 0 <= left < len(events):
            events = events[:left]
        out += events
        left -= len(events)
        after = position
        if not left:
            break
    return out, after, left


def stream_info_of(row: Sequence[Any]) -> StreamInfo:
    """A row ``(name, version, metadata, deleted)`` of the streams table; ``metadata`` is JSON
    (text or bytes), or NULL for none."""
    name, version, metadata, deleted = row
    decoded = {} if metadata is None else msgspec.json.decode(metadata)
    return StreamInfo(name, version, decoded, bool(deleted))
