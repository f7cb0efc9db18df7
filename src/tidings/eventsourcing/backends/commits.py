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

A row that does not read back as what :func:`pack` wrote (bytes that are not msgpack, fields of
the wrong type, fewer or more events than its count) raises
:class:`~tidings.errors.CorruptRecord` naming the store, the stream and the row's versions and
positions; it never loads as a shorter or shifted stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from tidings.errors import CorruptRecord
from tidings.eventsourcing.records import NewEvent, RecordedEvent, StreamInfo

__all__ = [
    "MAX_EVENTS_PER_COMMIT",
    "PAGE",
    "backward_page",
    "forward_page",
    "log_page",
    "pack",
    "read_log",
    "read_stream",
    "stream_info_of",
    "unpack",
]

MAX_EVENTS_PER_COMMIT = 1000
PAGE = 256
"""Commit rows per query. Backends fetch whole pages, so no statement stays open while a caller
iterates (on SQLite an open statement would pin its snapshot)."""

ToTime = Callable[[Any], datetime]
"""Turns a row's ``recorded_at`` into an aware datetime (the identity where the driver does)."""

Fetch = Callable[[int, int], Awaitable[Sequence[Any]]]
"""``fetch(bound, rows)``: one query of a backend, up to ``rows`` commit rows from ``bound`` on
(a stream's versions from it, or below it going backwards; the log's positions after it)."""

_encoder = msgspec.msgpack.Encoder()
# NewEvent is array_like: each event is [type, data, id, metadata, schema_version]. Decoding with
# the types checks every field of a row for about 5% more than an untyped decode.
_decode = msgspec.msgpack.Decoder(list[tuple[str, bytes, str, dict[str, str], int]]).decode
_decode_metadata = msgspec.json.Decoder(dict[str, Any]).decode


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
    store: str,
    stream: str,
    version: int,
    position: int,
    count: int,
    recorded_at: Any,
    packed: bytes,
    to_time: ToTime,
) -> list[RecordedEvent]:
    """The recorded events of one commit row of ``store``, oldest first.

    ``version`` and ``position`` are those of the row's last event. Raises CorruptRecord for a
    row that does not hold ``count`` well-formed events or whose time ``to_time`` refuses.
    """
    try:
        when = to_time(recorded_at)
        decoded = _decode(packed)
    except (msgspec.DecodeError, TypeError, ValueError, OverflowError) as exc:
        raise _corrupt(store, stream, version, position, count, f"{exc}") from exc
    if len(decoded) != count:
        reason = f"the row holds {len(decoded)} events, not {count}"
        raise _corrupt(store, stream, version, position, count, reason)
    version -= count
    position -= count
    out: list[RecordedEvent] = []
    append = out.append
    for type_, data, id_, metadata, schema_version in decoded:
        version += 1
        position += 1
        append(
            RecordedEvent(
                stream, version, position, type_, data, id_, metadata, schema_version, when
            )
        )
    return out


def _corrupt(
    store: str, stream: str, version: int, position: int, count: int, reason: str
) -> CorruptRecord:
    if count == 1:
        where = f"version {version}, position {position}"
    else:
        first_version, first_position = version - count + 1, position - count + 1
        where = f"versions {first_version}-{version}, positions {first_position}-{position}"
    return CorruptRecord(store, f"stream {stream!r} {where}", f"events: {reason}")


# The readers below slice pages of commit rows into events. Each takes the rows of one query and
# ``left``, the events still wanted (-1: no limit), and returns the events and where the next
# page starts; a page shorter than PAGE rows was the last.


def forward_page(
    store: str, stream: str, rows: Sequence[Any], start: int, left: int, to_time: ToTime
) -> tuple[list[RecordedEvent], int, int]:
    """Rows ``(version, position, count, recorded_at, events)`` of one stream in version order:
    the events from version ``start``, the next ``start`` and ``left``."""
    out: list[RecordedEvent] = []
    for version, position, count, recorded_at, packed in rows:
        events = unpack(store, stream, version, position, count, recorded_at, packed, to_time)
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
    store: str, stream: str, rows: Sequence[Any], below: int, left: int, to_time: ToTime
) -> tuple[list[RecordedEvent], int, int]:
    """Rows of one stream in reverse version order: the events from version ``below`` down, the
    next ``below`` and ``left``."""
    out: list[RecordedEvent] = []
    for version, position, count, recorded_at, packed in rows:
        events = unpack(store, stream, version, position, count, recorded_at, packed, to_time)
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
    store: str, rows: Sequence[Any], after: int, left: int, to_time: ToTime
) -> tuple[list[RecordedEvent], int, int]:
    """Rows ``(stream, version, position, count, recorded_at, events)`` in position order: the
    events after position ``after``, the next ``after`` and ``left``."""
    out: list[RecordedEvent] = []
    for stream, version, position, count, recorded_at, packed in rows:
        events = unpack(store, stream, version, position, count, recorded_at, packed, to_time)
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


async def read_stream(
    store: str,
    stream: str,
    *,
    forward: Fetch,
    backward: Fetch,
    from_version: int | None,
    backwards: bool,
    limit: int | None,
    to_time: ToTime,
) -> AsyncIterator[RecordedEvent]:
    """``EventStore.read`` over a backend's two stream queries, one PAGE of rows at a time."""
    left = -1 if limit is None else limit
    if backwards:
        below = 2**62 if from_version is None else from_version
        while left:
            rows = await backward(below + 1, PAGE)
            events, below, left = backward_page(store, stream, rows, below, left, to_time)
            for event in events:
                yield event
            if len(rows) < PAGE:
                return
    else:
        start = 1 if from_version is None else from_version
        while left:
            rows = await forward(start, PAGE)
            events, start, left = forward_page(store, stream, rows, start, left, to_time)
            for event in events:
                yield event
            if len(rows) < PAGE:
                return


async def read_log(
    store: str, fetch: Fetch, *, after: int, limit: int | None, to_time: ToTime
) -> AsyncIterator[RecordedEvent]:
    """``EventStore.read_all`` over a backend's log query, one PAGE of rows at a time (fewer
    when ``limit`` needs fewer)."""
    left = -1 if limit is None else limit
    while left:
        rows = await fetch(after, PAGE if left < 0 else min(left, PAGE))
        events, after, left = log_page(store, rows, after, left, to_time)
        for event in events:
            yield event
        if len(rows) < PAGE:
            return


def stream_info_of(store: str, row: Sequence[Any]) -> StreamInfo:
    """A row ``(name, version, metadata, deleted)`` of ``store``'s streams table; ``metadata`` is
    a JSON object (text or bytes), or NULL for none. Raises CorruptRecord for other metadata."""
    name, version, metadata, deleted = row
    try:
        decoded = {} if metadata is None else _decode_metadata(metadata)
    except (msgspec.DecodeError, TypeError) as exc:
        raise CorruptRecord(store, f"stream {name!r}", f"metadata: {exc}") from exc
    return StreamInfo(name, version, decoded, bool(deleted))
