"""Event sourcing: an event store, aggregates, repositories, projections and the outbox relay."""

from tidings.eventsourcing.aggregate import Aggregate
from tidings.eventsourcing.outbox import OutboxRelay, Publisher
from tidings.eventsourcing.projection import (
    Projection,
    ProjectionContext,
    ProjectionStatus,
)
from tidings.eventsourcing.repository import Repository
from tidings.eventsourcing.store import (
    ANY,
    NO_STREAM,
    EventStore,
    EventStoreBackend,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StoreTransaction,
    StreamDeleted,
    StreamInfo,
)
from tidings.eventsourcing.upcasting import Upcaster, Upcasters

__all__ = [
    "ANY",
    "NO_STREAM",
    "Aggregate",
    "EventStore",
    "EventStoreBackend",
    "ExpectedVersion",
    "NewEvent",
    "OutboxRelay",
    "Projection",
    "ProjectionContext",
    "ProjectionStatus",
    "Publisher",
    "RecordedEvent",
    "Repository",
    "Snapshot",
    "StoreTransaction",
    "StreamDeleted",
    "StreamInfo",
    "Upcaster",
    "Upcasters",
]
