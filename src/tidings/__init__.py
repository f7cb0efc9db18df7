"""tidings: typed, fast event-driven applications, from one process to real brokers."""

from tidings.bus import CAUSATION_ID, CORRELATION_ID, Bus
from tidings.cloudevents import CloudEvents
from tidings.codec import Codec, JsonCodec, Registry, event, registry
from tidings.context import Current, current
from tidings.dead_letters import DeadLetter, DeadLetters, DeadLetterStore
from tidings.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptRecord,
    DeadLettered,
    DecodeError,
    HandlerTimeout,
    MessageTooLarge,
    NoResponder,
    NotFound,
    NotHandled,
    QueueFull,
    RequestTimeout,
    ServiceUnavailable,
    StreamDeleted,
    SyncInAsyncError,
    TidingsError,
    TransportError,
    UnknownEventType,
)
from tidings.eventsourcing import (
    ANY,
    NO_STREAM,
    Aggregate,
    EventStore,
    NewEvent,
    OutboxRelay,
    Projection,
    ProjectionContext,
    RecordedEvent,
    Repository,
    Upcasters,
)
from tidings.health import Health, RouteHealth
from tidings.message import Malformed, Message, new_id
from tidings.middleware import Handler, Middleware, chain
from tidings.middleware.retry import Retry
from tidings.outcome import Outcome, PublishResult
from tidings.outcome_stream import (
    Failed,
    FinalOutcome,
    Handled,
    Missed,
    OutcomeStream,
    StreamOptions,
    Undecodable,
)
from tidings.route import Route
from tidings.telemetry import Telemetry
from tidings.transports.base import Delivery, Features, Subscription, Transport
from tidings.workers import worker_id

__all__ = [
    "ANY",
    "Aggregate",
    "Bus",
    "CAUSATION_ID",
    "CORRELATION_ID",
    "ClosedError",
    "CloudEvents",
    "Codec",
    "ConcurrencyError",
    "CorruptRecord",
    "Current",
    "DeadLetter",
    "DeadLetterStore",
    "DeadLettered",
    "DeadLetters",
    "DecodeError",
    "Delivery",
    "EventStore",
    "Failed",
    "Features",
    "FinalOutcome",
    "Handled",
    "Handler",
    "HandlerTimeout",
    "Health",
    "JsonCodec",
    "Malformed",
    "Message",
    "MessageTooLarge",
    "Middleware",
    "Missed",
    "NO_STREAM",
    "NewEvent",
    "NoResponder",
    "NotFound",
    "NotHandled",
    "OutboxRelay",
    "Outcome",
    "OutcomeStream",
    "Projection",
    "ProjectionContext",
    "PublishResult",
    "QueueFull",
    "RecordedEvent",
    "Registry",
    "Repository",
    "RequestTimeout",
    "Retry",
    "Route",
    "RouteHealth",
    "ServiceUnavailable",
    "StreamDeleted",
    "StreamOptions",
    "Subscription",
    "SyncInAsyncError",
    "Telemetry",
    "TidingsError",
    "Transport",
    "TransportError",
    "Undecodable",
    "UnknownEventType",
    "Upcasters",
    "chain",
    "current",
    "event",
    "new_id",
    "registry",
    "worker_id",
]
