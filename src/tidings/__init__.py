"""tidings: typed, fast event-driven applications, from one process to real brokers."""

from tidings.bus import CAUSATION_ID, CORRELATION_ID, Bus
from tidings.codec import Codec, JsonCodec, Registry, event, registry
from tidings.context import Current, current
from tidings.deadletters import DeadLetter, DeadLetters, DeadLetterStore
from tidings.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptRecord,
    DeadLettered,
    DecodeError,
    HandlerTimeout,
    MessageTooLarge,
    NotFound,
    NotHandled,
    QueueFull,
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
from tidings.route import Route
from tidings.telemetry import Telemetry
from tidings.transports.base import Delivery, Features, Subscription, Transport

__all__ = [
    "ANY",
    "Aggregate",
    "Bus",
    "CAUSATION_ID",
    "CORRELATION_ID",
    "ClosedError",
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
    "Features",
    "Handler",
    "HandlerTimeout",
    "Health",
    "JsonCodec",
    "Malformed",
    "Message",
    "MessageTooLarge",
    "Middleware",
    "NO_STREAM",
    "NewEvent",
    "NotFound",
    "NotHandled",
    "OutboxRelay",
    "Outcome",
    "Projection",
    "ProjectionContext",
    "PublishResult",
    "QueueFull",
    "RecordedEvent",
    "Registry",
    "Repository",
    "Retry",
    "Route",
    "RouteHealth",
    "ServiceUnavailable",
    "StreamDeleted",
    "Subscription",
    "SyncInAsyncError",
    "Telemetry",
    "TidingsError",
    "Transport",
    "TransportError",
    "UnknownEventType",
    "Upcasters",
    "chain",
    "current",
    "event",
    "new_id",
    "registry",
]
