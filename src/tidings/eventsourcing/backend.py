"""What an event store backend implements: the storage primitives of one database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from tidings.eventsourcing.records import (
    ANY,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
)

__all__ = ["Calls", "EventStoreBackend", "StoreTransaction"]


class StoreTransaction(Protocol):
    """A transaction on the store's own database, for projections that keep their rows there.

    ``connection`` is the backend's connection (``sqlite3.Connection``, ``asyncpg.Connection``;
    ``None`` for memory). Rows written through it and the checkpoint commit together, or roll back
    together when the ``async with`` block raises.
    """

    connection: Any

    async def set_checkpoint(self, name: str, position: int) -> None: ...

    async def get_checkpoint(self, name: str) -> int: ...


class Calls(Protocol):
    """The calls of a backend that telemetry can observe: a backend, or
    :class:`~tidings.eventsourcing.observed.ObservedCalls` wrapping one."""

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> int: ...

    def read(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self, stream: str) -> Snapshot | None: ...


class EventStoreBackend(Calls, Protocol):
    """The storage primitives of one database. See :class:`EventStore` for each contract."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def read_all(
        self, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]: ...

    async def stream_info(self, stream: str) -> StreamInfo: ...

    async def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None: ...

    async def streams(self) -> list[StreamInfo]: ...

    async def delete_stream(self, stream: str) -> None: ...

    async def head_position(self) -> int: ...

    async def wait_for_new(self, after: int, timeout: float) -> None: ...

    async def get_checkpoint(self, name: str) -> int: ...

    async def set_checkpoint(self, name: str, position: int) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]: ...
