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

With OpenTelemetry configured, appends, stream reads, snapshots and subscriptions make spans and
metrics, and each appended event keeps the append's trace context in its metadata
(:mod:`tidings.telemetry.store`); without it, nothing is paid.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from tidings.errors import ClosedError, StreamDeleted
from tidings.eventsourcing.backend import Calls, EventStoreBackend, StoreTransaction
from tidings.eventsourcing.observed import ObservedCalls
from tidings.eventsourcing.open import open_backend
from tidings.eventsourcing.records import (
    ANY,
    NO_STREAM,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    check_expected_version,
    validate_expected_version,
)
from tidings.eventsourcing.subscription import subscribe
from tidings.resource import Resource
from tidings.telemetry.providers import Telemetry
from tidings.telemetry.store import StoreObserver, store_configured
from tidings.telemetry.systems import db_system_of
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

_NO_METADATA: Mapping[str, str] = {}


class EventStore(Resource):
    """An event store on the database named by ``url`` (or on a backend built directly).

    ``memory://`` (in process, for tests), ``sqlite:///path/events.db`` (the embedded default;
    ``?synchronous=full`` for power-loss durability) and ``postgresql://user@host/db``
    (``?schema=name``). ``url`` is the URL with its password replaced by ``***`` (for logs;
    the backend keeps what it needs to connect). The constructor does no I/O: the store opens on
    ``start()``, on ``async with store``, or on first use, and ``aclose()`` closes it; any call
    afterwards raises :class:`~tidings.ClosedError`. All methods are safe to call concurrently
    from tasks of one event loop.

    ``telemetry`` names the OpenTelemetry providers to report to; by default the global ones, if
    the application set them, looked up when the store starts (as a bus does).
    """

    __slots__ = ("_backend", "_calls", "_closed", "_observer", "_started", "_telemetry", "url")

    def __init__(
        self, url: str | EventStoreBackend = "memory://", *, telemetry: Telemetry | None = None
    ) -> None:
        if isinstance(url, str):
            self._backend: EventStoreBackend = open_backend(url)
            self.url = redact(url)
        else:
            self.url = type(url).__name__
            self._backend = url
        self._calls: Calls = self._backend  # observed ones once started, if telemetry is set
        self._observer: StoreObserver | None = None
        self._telemetry = telemetry
        self._started = False
        self._closed = False

    @property
    def backend(self) -> EventStoreBackend:
        """The backend this store delegates to."""
        return self._backend

    @property
    def observer(self) -> StoreObserver | None:
        """What the store reports to OpenTelemetry once started; None when not configured."""
        return self._observer

    async def start(self) -> None:
        """Open connections and create the schema if missing. Idempotent."""
        if self._closed:
            raise ClosedError("the event store is closed")
        if not self._started:
            await self._backend.start()
            system = db_system_of(type(self._backend).__module__)
            observer = self._observer = store_configured(system, self._telemetry)
            if observer is not None:
                self._calls = ObservedCalls(self._backend, observer)
            self._started = True

    async def aclose(self) -> None:
        """Finish queued writes, close connections; end subscriptions. Idempotent."""
        if not self._closed:
            self._closed = True
            self._started = False
            await self._backend.aclose()

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
        return await self._calls.append(stream, events, expected_version=expected_version)

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
            return self._calls.read(
                stream, from_version=from_version, backwards=backwards, limit=limit
            )
        return self._started_then(
            lambda: self._calls.read(
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
        return subscribe(
            self, after=after, page_size=page_size, idle_timeout=idle_timeout, observed=True
        )

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
        await self._calls.save_snapshot(snapshot)

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        """The stream's latest snapshot, or None."""
        if not self._started:
            await self.start()
        return await self._calls.load_snapshot(stream)

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
