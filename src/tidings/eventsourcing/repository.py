"""Loading and saving aggregates through an event store, with optional snapshots."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from tidings.codec import Codec, Registry, registry
from tidings.errors import NotFound
from tidings.eventsourcing.aggregate import Aggregate, restore_state, state_of
from tidings.eventsourcing.store import (
    NO_STREAM,
    EventStore,
    ExpectedVersion,
    RecordedEvent,
    Snapshot,
)
from tidings.eventsourcing.upcasting import EventMapper, Upcasters, schema_version_of

__all__ = ["Repository"]

A = TypeVar("A", bound=Aggregate)

log = logging.getLogger("tidings.eventsourcing")


class Repository(Generic[A]):
    """Loads aggregates of one class from their streams and saves their new events.

    ``save`` is optimistic: it appends with the version the aggregate was loaded at (``NO_STREAM``
    for a new one), so of two saves of the same loaded version one raises
    :class:`~tidings.ConcurrencyError`; load again and retry the command to resolve it.

    With ``snapshot_every=n`` a snapshot of the aggregate's state is written whenever a save makes
    the stream cross a multiple of ``n`` events, and ``load`` starts from the latest snapshot and
    applies only the events after it. Without it, snapshots are neither written nor read. A
    snapshot whose type or ``__schema_version__`` differs from the aggregate class is ignored.

    ``upcasters`` upgrade old event payloads on load (see :mod:`tidings.eventsourcing.upcasting`).
    The repository holds no aggregate state and is safe to share between tasks.
    """

    def __init__(
        self,
        store: EventStore,
        aggregate: type[A],
        *,
        snapshot_every: int | None = None,
        upcasters: Upcasters | None = None,
        codec: Codec | None = None,
        registry: Registry = registry,
    ) -> None:
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.store = store
        self.aggregate = aggregate
        self.snapshot_every = snapshot_every
        self._events = EventMapper(codec=codec, registry=registry, upcasters=upcasters)
        self._snapshot_type = aggregate.__qualname__
        self._snapshot_version = schema_version_of(aggregate)

    async def load(self, id: str) -> A:
        """The aggregate rebuilt from its snapshot (if any) and events.

        Raises NotFound when the stream has no events, DecodeError or UnknownEventType when a
        stored event cannot be turned into an event object.
        """
        aggregate = self.aggregate(id)
        if self.snapshot_every is not None:
            snapshot = await self.store.load_snapshot(id)
            if (
                snapshot is not None
                and snapshot.type == self._snapshot_type
                and snapshot.schema_version == self._snapshot_version
            ):
                restore_state(aggregate, snapshot.data, self._events.codec)
                aggregate.version = snapshot.version
        to_event = self._events.to_event
        async for recorded in self.store.read(id, from_version=aggregate.version + 1):
            aggregate.apply(to_event(recorded))
            aggregate.version = recorded.version
        if aggregate.version == 0:
            raise NotFound(f"{self.aggregate.__qualname__} {id!r} does not exist")
        return aggregate

    def decode(self, recorded: RecordedEvent) -> Any:
        """The event object of an event read from the store (``store.read``, ``read_all``),
        upcast with this repository's upcasters. Raises UnknownEventType for a name no class
        was registered for, DecodeError for a payload that does not fit its class."""
        return self._events.to_event(recorded)

    async def save(self, aggregate: A, *, metadata: Mapping[str, str] | None = None) -> None:
        """Append the aggregate's pending events atomically, then clear them.

        ``metadata`` (correlation ids, say) is stored with every event. Does nothing when there
        are no pending events. Raises ConcurrencyError when the stream moved since the aggregate
        was loaded (or, for a new aggregate, when the stream exists), StreamDeleted when it was
        deleted, and TypeError (before storing anything) when a snapshot is due and the aggregate
        has unannotated attributes. On any error the pending events are kept.
        """
        pending = aggregate.pending_events
        if not pending:
            return
        saved = aggregate.version - len(pending)
        expected: ExpectedVersion = NO_STREAM if saved == 0 else saved
        # Encode the state before appending, so an aggregate that cannot be snapshotted fails
        # the save instead of storing events and then failing.
        due = self._snapshot_due(saved, aggregate.version)
        state = state_of(aggregate, self._events.codec) if due else None
        new_events = [self._events.to_new_event(event, metadata) for event in pending]
        await self.store.append(aggregate.id, new_events, expected_version=expected)
        aggregate.collect()
        if state is not None:
            await self._save_snapshot(aggregate, state)

    def _snapshot_due(self, before: int, after: int) -> bool:
        every = self.snapshot_every
        return every is not None and before // every != after // every

    async def _save_snapshot(self, aggregate: A, state: bytes) -> None:
        snapshot = Snapshot(
            stream=aggregate.id,
            version=aggregate.version,
            type=self._snapshot_type,
            data=state,
            schema_version=self._snapshot_version,
        )
        try:
            await self.store.save_snapshot(snapshot)
        except Exception:
            # The events are stored, so the save succeeded; a snapshot is only a cache and the
            # next crossing writes a new one. Raising here would make callers retry a done save.
            log.exception("snapshot of %s at version %d failed", aggregate.id, aggregate.version)
