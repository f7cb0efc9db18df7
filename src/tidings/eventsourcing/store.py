"""The event store contract shared by every backend (memory, SQLite, PostgreSQL).

A store is a set of streams (one per aggregate, say) and one global log over all of them.

* ``append`` is atomic per call: every event of the call is stored, or none is. It checks
  ``expected_version`` against the stream's current version first and raises
  :class:`~tidings.ConcurrencyError` on a mismatch. Each stored event gets its stream ``version``
  (1, 2, 3… within its stream, contiguous) and a global ``position`` in the log.
* ``read_all(after=p)`` yields events in position order with no gaps: a reader never skips an
  event that commits after a later position was already visible.
* A deleted stream leaves a tombstone: its events' payloads are erased, its name cannot be reused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

__all__ = [
    "ANY",
    "NO_STREAM",
    "EventStore",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
    "StoreTransaction",
    "StreamInfo",
]

NO_STREAM: Final = "no stream"
"""``expected_version`` for an append that must create the stream."""
ANY: Final = "any"
"""``expected_version`` for an append that does not check the version."""

ExpectedVersion = int | Literal["no stream", "any"]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event ready to append: its name, encoded JSON payload and metadata.

    ``schema_version`` lets upcasters turn old payloads into the current shape on read.
    """

    type: str
    data: bytes
    id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: ``version`` within its stream, ``position`` in the global log."""

    stream: str
    version: int
    position: int
    type: str
    data: bytes
    id: str
    metadata: Mapping[str, str]
    schema_version: int
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's name, current version, metadata and whether it was deleted."""

    name: str
    version: int
    metadata: Mapping[str, Any]
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's encoded state as of ``version`` of its stream."""

    stream: str
    version: int
    type: str
    data: bytes
    schema_version: int = 1


class StoreTransaction(Protocol):
    """A transaction on the store's own database, for projections that keep their rows there.

    ``connection`` is the backend's connection (``sqlite3.Connection``, ``asyncpg.Connection``;
    ``None`` for memory). Rows written through it and the checkpoint commit together.
    """

    connection: Any

    async def set_checkpoint(self, name: str, position: int) -> None: ...


class EventStore(Protocol):
    """What every event store backend provides. All methods are safe to call concurrently."""

    async def start(self) -> None:
        """Open connections and create the schema if missing. Idempotent."""

    async def aclose(self) -> None:
        """Close connections; the store cannot be used afterwards."""

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> int:
        """Append atomically; returns the stream's new version.

        Raises ConcurrencyError when ``expected_version`` does not match.
        """
        ...

    def read(
        self,
        stream: str,
        *,
        from_version: int = 1,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """The stream's events from ``from_version`` (or down from it when ``backwards``)."""
        ...

    def read_all(self, *, after: int = 0, limit: int | None = None) -> AsyncIterator[RecordedEvent]:
        """Events of every stream with ``position > after``, in position order, without gaps."""
        ...

    async def stream_info(self, stream: str) -> StreamInfo:
        """Raises NotFound for a stream that was never written."""
        ...

    async def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None: ...

    async def streams(self) -> list[StreamInfo]: ...

    async def delete_stream(self, stream: str) -> None:
        """Tombstone the stream and erase its events' payloads (data-protection requests)."""

    async def head_position(self) -> int:
        """The highest position that ``read_all`` can currently return (0 when empty)."""
        ...

    async def wait_for_new(self, after: int, timeout: float) -> None:
        """Return once a position greater than ``after`` may be readable, or after ``timeout``.

        SQLite and memory wake up in process; PostgreSQL uses LISTEN/NOTIFY. Spurious wake-ups
        are allowed: callers re-read.
        """

    def subscribe(self, *, after: int = 0) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``after`` through ``read_all``, then follow live appends, forever.

        Never skips or repeats an event while writers keep writing; ends when the store closes
        or the iterating task is cancelled.
        """
        ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self, stream: str) -> Snapshot | None: ...

    async def get_checkpoint(self, name: str) -> int:
        """The stored position of a named subscriber (0 when it never stored one)."""
        ...

    async def set_checkpoint(self, name: str, position: int) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """A transaction on the store's database (see StoreTransaction)."""
        ...
