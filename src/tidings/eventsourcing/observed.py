"""The store's calls that OpenTelemetry sees: appends (which keep the trace context with each
event), stream reads and snapshots. :class:`EventStore` goes through them only when telemetry is
configured; see :mod:`tidings.telemetry.store` for the spans and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import msgspec

from tidings.eventsourcing.backend import EventStoreBackend
from tidings.eventsourcing.records import ANY, ExpectedVersion, NewEvent, RecordedEvent, Snapshot
from tidings.telemetry.store import StoreObserver

__all__ = ["ObservedCalls"]


class ObservedCalls:
    """``backend``'s observable calls, each reported to ``observer``."""

    __slots__ = ("_backend", "_observer")

    def __init__(self, backend: EventStoreBackend, observer: StoreObserver) -> None:
        self._backend = backend
        self._observer = observer

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> int:
        with self._observer.appending(stream, expected_version, len(events)) as operation:
            if operation.headers:
                events = [_with_metadata(event, operation.headers) for event in events]
            version = await self._backend.append(stream, events, expected_version=expected_version)
            operation.version(version)
        return version

    def read(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        events = self._backend.read(
            stream, from_version=from_version, backwards=backwards, limit=limit
        )
        return self._observer.reading(stream, events)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._observer.operation("save_snapshot", snapshot.stream) as operation:
            operation.version(snapshot.version)
            await self._backend.save_snapshot(snapshot)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        with self._observer.operation("load_snapshot", stream) as operation:
            snapshot = await self._backend.load_snapshot(stream)
            if snapshot is not None:
                operation.version(snapshot.version)
        return snapshot


def _with_metadata(event: NewEvent, headers: dict[str, str]) -> NewEvent:
    """``event`` with the append's trace context in its metadata, replacing any it carried."""
    return msgspec.structs.replace(event, metadata={**event.metadata, **headers})
