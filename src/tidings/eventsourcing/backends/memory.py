"""An event store in process memory: for tests, examples and throw-away runs.

It keeps the :class:`~tidings.eventsourcing.store.EventStore` contract exactly (the conformance
suite runs against it) and loses everything when the process ends. Every operation completes
without yielding to the event loop, so an append is atomic by construction and positions are
assigned in append order: ``read_all`` can never see a gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from tidings._waiters import Wakeup
from tidings.errors import ClosedError, NotFound, StreamDeleted
from tidings.eventsourcing.records import (
    ANY,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    check_expected_version,
    validate_expected_version,
)

__all__ = ["MemoryEventStore"]


class _Stream:
    __slots__ = ("deleted", "events", "metadata", "name", "version")

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = 0
        self.events: list[RecordedEvent] = []  # index = version - 1; emptied on delete
        self.metadata: Mapping[str, Any] = {}
        self.deleted = False


class MemoryEventStore:
    """The in-memory backend (``memory://``)."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._log: list[RecordedEvent | None] = []  # index = position - 1; None once erased
        self._snapshots: dict[str, Snapshot] = {}
        self._checkpoints: dict[str, int] = {}
        self._wakeup = Wakeup()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> MemoryEventStore:
        return cls()

    async def start(self) -> None:
        self._check_open()

    async def aclose(self) -> None:
        self._closed = True
        self._wakeup.close()

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> int:
        self._check_open()
        validate_expected_version(expected_version)
        found = self._streams.get(stream)
        current = None if found is None else found.version
        check_expected_version(
            stream, expected_version, current, found is not None and found.deleted
        )
        if not events:
            return current or 0
        for event in events:
            if type(event) is not NewEvent:
                raise TypeError(f"append takes NewEvent items, got {type(event).__qualname__}")
        if found is None:
            found = self._streams[stream] = _Stream(stream)
        now = datetime.now(UTC)
        version = found.version
        position = len(self._log)
        recorded = [
            RecordedEvent(
                stream,
                version + i,
                position + i,
                e.type,
                e.data,
                e.id,
                dict(e.metadata),
                e.schema_version,
                now,
            )
            for i, e in enumerate(events, 1)
        ]
        found.events.extend(recorded)
        found.version += len(recorded)
        self._log.extend(recorded)
        self._wakeup.advance(len(self._log))
        return found.version

    async def read(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        self._check_open()
        found = self._streams.get(stream)
        if found is None or found.deleted:
            return
        events = found.events
        if backwards:
            end = len(events) if from_version is None else max(min(from_version, len(events)), 0)
            start = 0 if limit is None else max(end - limit, 0)
            selected = events[start:end][::-1]
        else:
            start = 0 if from_version is None else max(from_version - 1, 0)
            selected = events[start:] if limit is None else events[start : start + limit]
        for event in selected:
            yield event

    async def read_all(
        self, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        self._check_open()
        log = self._log
        end = len(log)  # events appended while the caller iterates belong to its next read
        index = max(after, 0)
        left = end if limit is None else limit
        while index < end and left > 0:
            event = log[index]
            index += 1
            if event is not None:
                left -= 1
                yield event

    async def stream_info(self, stream: str) -> StreamInfo:
        found = self._existing(stream)
        return StreamInfo(stream, found.version, dict(found.metadata), found.deleted)

    async def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None:
        found = self._existing(stream)
        if found.deleted:
            raise StreamDeleted(stream)
        found.metadata = dict(metadata)

    async def streams(self) -> list[StreamInfo]:
        self._check_open()
        return [
            StreamInfo(s.name, s.version, dict(s.metadata), s.deleted)
            for s in self._streams.values()
        ]

    async def delete_stream(self, stream: str) -> None:
        found = self._existing(stream)
        found.deleted = True
        found.metadata = {}
        for event in found.events:
            self._log[event.position - 1] = None
        found.events = []
        self._snapshots.pop(stream, None)
        self._wakeup.reset(await self.head_position())

    async def head_position(self) -> int:
        self._check_open()
        for position in range(len(self._log), 0, -1):
            if self._log[position - 1] is not None:
                return position
        return 0

    async def wait_for_new(self, after: int, timeout: float) -> None:
        self._check_open()
        await self._wakeup.wait(after, timeout)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self._check_open()
        found = self._streams.get(snapshot.stream)
        if found is not None and found.deleted:
            return
        latest = self._snapshots.get(snapshot.stream)
        if latest is None or latest.version <= snapshot.version:
            self._snapshots[snapshot.stream] = snapshot

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        self._check_open()
        return self._snapshots.get(stream)

    async def get_checkpoint(self, name: str) -> int:
        self._check_open()
        return self._checkpoints.get(name, 0)

    async def set_checkpoint(self, name: str, position: int) -> None:
        self._check_open()
        self._checkpoints[name] = position

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_MemoryTransaction]:
        self._check_open()
        tx = _MemoryTransaction(self._checkpoints)
        yield tx
        self._checkpoints.update(tx.staged)

    def _existing(self, stream: str) -> _Stream:
        self._check_open()
        found = self._streams.get(stream)
        if found is None:
            raise NotFound(f"stream {stream!r} does not exist")
        return found

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the event store is closed")


class _MemoryTransaction:
    """Checkpoints staged until the block ends without an exception. ``connection`` is None."""

    connection: Any = None

    def __init__(self, checkpoints: Mapping[str, int]) -> None:
        self._committed = checkpoints
        self.staged: dict[str, int] = {}

    async def set_checkpoint(self, name: str, position: int) -> None:
        self.staged[name] = position

    async def get_checkpoint(self, name: str) -> int:
        return self.staged.get(name, self._committed.get(name, 0))
