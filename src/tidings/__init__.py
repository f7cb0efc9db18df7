"""tidings: typed, fast event-driven applications, from one process to real brokers."""

from tidings.bus import CAUSATION_ID, CORRELATION_ID, Bus, NotHandled
from tidings.codec import Codec, JsonCodec, Registry, event, registry
from tidings.deadletters import DeadLetter, DeadLetters, DeadLetterStore
from tidings.errors import (
    ClosedError,
    ConcurrencyError,
    DeadLettered,
    DecodeError,
    HandlerTimeout,
    NotFound,
    QueueFull,
    ServiceUnavailable,
    SyncInAsyncError,
    TidingsError,
    TransportError,
    UnknownEventType,
)
from tidings.message import Message, new_id
from tidings.middleware import Handler, Middleware, chain
from tidings.middleware.retry import Retry
from tidings.outcome import Outcome, PublishResult
from tidings.route import Route
from tidings.transports.base import Delivery, Features, Subscription, Transport

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "Bus",
    "ClosedError",
    "Codec",
    "ConcurrencyError",
    "DeadLetter",
    "DeadLetterStore",
    "DeadLettered",
    "DeadLetters",
    "DecodeError",
    "Delivery",
    "Features",
    "Handler",
    "HandlerTimeout",
    "JsonCodec",
    "Message",
    "Middleware",
    "NotFound",
    "NotHandled",
    "Outcome",
    "PublishResult",
    "QueueFull",
    "Registry",
    "Retry",
    "Route",
    "ServiceUnavailable",
    "Subscription",
    "SyncInAsyncError",
    "TidingsError",
    "Transport",
    "TransportError",
    "UnknownEventType",
    "chain",
    "event",
    "new_id",
    "registry",
]
