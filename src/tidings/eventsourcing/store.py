"""The event store: the contract every backend implements and the :class:`EventStore` users hold.

A store is a set of streams (one per aggregate, say) and one global log over all of them.

* ``append`` is atomic per call: every event of the call is stored, or none is. It checks
  ``expected_version`` against the stream's current version first and raises
  :class:`~tidings.ConcurrencyError` on a mismatch. Each stored event gets its stream ``version``
  (1, 2, 3… within its stream, contiguous) and a global ``position`` in the log.
* ``read_all(after=p)`` yields events in position order with no gaps: a reader never skips an
  event that commits after a later position was already visible.
* A deleted stream leaves a tombstone: its events' payloads are erased (they disappear from
  ``read`` and ``read_all``), its name cannot be reused (:class:`StreamDeleted`).

``EventStore("memory://" | "sqlite:///path" | "postgresql://…")`` picks the backend by URL; each
backend is an :class:`EventStoreBackend` and can also be built directly with typed options
(``EventStore(SqliteEventStore("events.db", synchronous="FULL"))``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, Protocol

import msgspec

from tidings.errors import ClosedError, ConcurrencyError, StreamDeleted
from tidings.message import new_id
from tidings.urls import redact

__all__ = [
    "ANY",
    "NO_STREAM",
    "EventStore",
    "EventStoreBackend",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
    "StoreTransaction",
    "StreamDeleted",
    "StreamInfo",
    "check_expected_version",
    "validate_expected_version",
]

NO_STREAM: Final = "no stream"
"""``expected_version`` for an append that must create the stream."""
ANY: Final = "any"
"""``expected_version`` for an append that does not check the version."""

ExpectedVersion = int | Literal["no stream", "any"]
"""A stream version (0 also matches a stream never written), ``NO_STREAM`` or ``ANY``."""

_NO_METADATA: Mapping[str, str] = {}


# NewEvent and RecordedEvent are msgspec Structs rather than dataclasses: one is built per event
# on every append and every read, and a frozen Struct is built ~10x faster than a frozen dataclass.
# ``array_like`` lets the SQL backends pack a whole append as one msgpack array, in C.
class NewEvent(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An event ready to append: its name, encoded JSON payload, id and metadata.

    ``id`` defaults to a fresh UUIDv7. ``schema_version`` lets upcasters turn old payloads into
    the current shape on read.
    """

    type: str
    data: bytes
    id: str = msgspec.field(default_factory=new_id)
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)
    schema_version: int = 1


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
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


def check_expected_version(
    stream: str, expected: ExpectedVersion, current: int | None, deleted: bool = False
) -> None:
    """Raise unless a stream at ``current`` (``None``: never written) accepts an append.

    Raises StreamDeleted for a deleted stream, ConcurrencyError for a version mismatch.
    """
    if deleted:
        raise StreamDeleted(stream)
    if expected == ANY:
        return
    if expected == NO_STREAM:
        if current is not None:
            raise ConcurrencyError(stream, expected, current)
    elif (current or 0) != expected:
        raise ConcurrencyError(stream, expected, current)


def validate_expected_version(expected: ExpectedVersion) -> None:
    """Raise ValueError for anything that is not a version >= 0, ``NO_STREAM`` or ``ANY``."""
    if isinstance(expected, int):
        if expected < 0:
            raise ValueError(f"expected_version must be >= 0, got {expected}")
    elif expected not in (ANY, NO_STREAM):
        raise ValueError(f"expected_version must be an int, NO_STREAM or ANY, got {expected!r}")


class StoreTransaction(Protocol):
    """A transaction on the store's own database, for projections that keep their rows there.

    ``connection`` is the backend's connection (``sqlite3.Connection``, ``asyncpg.Connection``;
    ``None`` for memory). Rows written through it and the checkpoint commit together, or roll back
    together when the ``async with`` block raises.
    """

    connection: Any

    async def set_checkpoint(self, name: str, position: int) -> None: ...

    async def get_checkpoint(self, name: str) -> int: ...


class EventStoreBackend(Protocol):
    """The storage primitives of one database. See :class:`EventStore` for each contract."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

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

    def read_all(
        self, *, after: int = 0, limit: int | None = None
    ) -> AsyncIterator[RecordedEvent]: ...

    async def stream_info(self, stream: str) -> StreamInfo: ...

    async def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None: ...

    async def streams(self) -> list[StreamInfo]: ...

    async def delete_stream(self, stream: str) -> None: ...

    async def head_position(self) -> int: ...

    async def wait_for_new(self, after: int, timeout: float) -> None: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def load_snapshot(self, stream: str) -> Snapshot | None: ...

    async def get_checkpoint(self, name: str) -> int: ...

    async def set_checkpoint(self, name: str, position: int) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]: ...


class EventStore:
    """An event store on the database named by ``url`` (or on a backend built directly).

    ``memory://`` (in process, for tests), ``sqlite:///path/events.db`` (the embedded default;
    ``?synchronous=full`` for power-loss durability) and ``postgresql://user@host/db``
    (``?schema=name``). ``url`` is the URL with its password replaced by ``***`` (for logs;
    the backend keeps what it needs to connect). The constructor does no I/O: the store opens on
    ``start()``, on ``async with store``, or on first use, and ``aclose()`` closes it; any call
    afterwards raises :class:`~tidings.ClosedError`. All methods are safe to call concurrently
    from tasks of one event loop.
    """

    __slots__ = ("_backend", "_closed", "_started", "url")

    def __init__(self, url: str | EventStoreBackend = "memory://") -> None:
        from tidings.eventsourcing.open import open_backend  # backends import this module

        if isinstance(url, str):
            self._backend: EventStoreBackend = open_backend(url)
            self.url = redact(url)
        else:
            self.url = type(url).__name__
            self._backend = url
        self._started = False
        self._closed = False

    @property
    def backend(self) -> EventStoreBackend:
        """The backend this store delegates to."""
        return self._backend

    async def start(self) -> None:
        """Open connections and create the schema if missing. Idempotent."""
        if self._closed:
            raise ClosedError("the event store is closed")
        if not self._started:
            await self._backend.start()
            self._started = True

    async def aclose(self) -> None:
        """Finish queued writes, close connections; end subscriptions. Idempotent."""
        if not self._closed:
            self._closed = True
            self._started = False
            await self._backend.aclose()

    async def __aenter__(self) -> EventStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> int:
        """Append atomically and return the stream's new version.

        ``expected_version``: the stream's current version (0 or ``NO_STREAM`` for a stream never
        written) or ``ANY``. Raises ConcurrencyError(stream, expected, actual) on a mismatch,
        StreamDeleted for a deleted stream. Appending no events only checks the version.
        Once awaited, an append may commit even if the awaiting task is cancelled.
        """
        if not self._started:
            await self.start()
        return await self._backend.append(stream, events, expected_version=expected_version)

    def read(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """The stream's events in version order from ``from_version`` (default: the first), or
        with ``backwards`` in reverse order down from ``from_version`` (default: the last).

        Yields nothing for a stream never written or deleted.
        """
        if self._started:
            return self._backend.read(
                stream, from_version=from_version, backwards=backwards, limit=limit
            )
        return self._started_then(
            lambda: self._backend.read(
                stream, from_version=from_version, backwards=backwards, limit=limit
            )
        )

    def read_all(self, *, after: int = 0, limit: int | None = None) -> AsyncIterator[RecordedEvent]:
        """Events of every stream with ``position > after``, in position order, without gaps."""
        if self._started:
            return self._backend.read_all(after=after, limit=limit)
        return self._started_then(lambda: self._backend.read_all(after=after, limit=limit))

    def subscribe(
        self, *, after: int = 0, page_size: int = 500, idle_timeout: float = 5.0
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``after`` through ``read_all``, then follow live appends, forever.

        Never skips or repeats an event while writers keep writing; ends when the store closes
        or the iterating task is cancelled. See :mod:`tidings.eventsourcing.subscription`.
        """
        from tidings.eventsourcing.subscription import subscribe

        return subscribe(self, after=after, page_size=page_size, idle_timeout=idle_timeout)

    async def stream_info(self, stream: str) -> StreamInfo:
        """Name, version, metadata and tombstone flag; raises NotFound for a stream never
        written."""
        if not self._started:
            await self.start()
        return await self._backend.stream_info(stream)

    async def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None:
        """Replace the stream's metadata (JSON-encodable values). Raises NotFound for a stream
        never written, StreamDeleted for a deleted one."""
        if not self._started:
            await self.start()
        await self._backend.set_stream_metadata(stream, metadata)

    async def streams(self) -> list[StreamInfo]:
        """Every stream, deleted ones included, in the order they were created."""
        if not self._started:
            await self.start()
        return await self._backend.streams()

    async def delete_stream(self, stream: str) -> None:
        """Tombstone the stream: erase its events' payloads, metadata and snapshot (for
        data-protection requests); its name cannot be used again. Idempotent; raises NotFound
        for a stream never written."""
        if not self._started:
            await self.start()
        await self._backend.delete_stream(stream)

    async def head_position(self) -> int:
        """The highest position that ``read_all`` can currently return (0 when empty)."""
        if not self._started:
            await self.start()
        return await self._backend.head_position()

    async def wait_for_new(self, after: int, timeout: float) -> None:
        """Return once a position greater than ``after`` may be readable, or after ``timeout``.

        SQLite and memory wake up in process (appends by another process are seen when the
        timeout expires); PostgreSQL uses LISTEN/NOTIFY. Spurious wake-ups are allowed: callers
        re-read. Returns at once when the store closes.
        """
        if not self._started:
            await self.start()
        await self._backend.wait_for_new(after, timeout)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` as the stream's latest unless a newer one is stored already."""
        if not self._started:
            await self.start()
        await self._backend.save_snapshot(snapshot)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        """The stream's latest snapshot, or None."""
        if not self._started:
            await self.start()
        return await self._backend.load_snapshot(stream)

    async def get_checkpoint(self, name: str) -> int:
        """The stored position of a named subscriber (0 when it never stored one)."""
        if not self._started:
            await self.start()
        return await self._backend.get_checkpoint(name)

    async def set_checkpoint(self, name: str, position: int) -> None:
        """Store the position of a named subscriber."""
        if not self._started:
            await self.start()
        await self._backend.set_checkpoint(name, position)

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """A transaction on the store's database (see StoreTransaction).

        Writes of the store itself (appends included) wait until it ends, so do not ``await``
        store methods other than the transaction's own inside the block.
        """
        if self._closed:
            raise ClosedError("the event store is closed")
        if not self._started:
            return _StartedTransaction(self)
        return self._backend.transaction()

    async def _started_then(
        self, iterate: Callable[[], AsyncIterator[RecordedEvent]]
    ) -> AsyncIterator[RecordedEvent]:
        await self.start()
        async for event in iterate():
            yield event

    def __repr__(self) -> str:
        return f"EventStore({self.url!r})"


class _StartedTransaction:
    """``store.transaction()`` on a store not started yet: start it, then open the transaction."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._inner: AbstractAsyncContextManager[StoreTransaction] | None = None

    async def __aenter__(self) -> StoreTransaction:
        await self._store.start()
        self._inner = self._store.backend.transaction()
        return await self._inner.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._inner is not None
        return await self._inner.__aexit__(exc_type, exc, tb)
