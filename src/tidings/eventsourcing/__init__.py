"""Event sourcing: an event store, aggregates, repositories, projections and the outbox relay."""

from tidings.eventsourcing.aggregate import Aggregate
from tidings.eventsourcing.outbox import OutboxRelay, Publisher
from tidings.eventsourcing.projection import (
    Projection,
    ProjectionContext,
    ProjectionStatus,
)
from tidings.eventsourcing.repository import Repository
from tidings.eventsourcing.upcasting import Upcaster, Upcasters

__all__ = [
    "Aggregate",
    "OutboxRelay",
    "Projection",
    "ProjectionContext",
    "ProjectionStatus",
    "Publisher",
    "Repository",
    "Upcaster",
    "Upcasters",
]
