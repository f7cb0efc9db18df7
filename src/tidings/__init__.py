"""tidings: typed, fast event-driven applications, from one process to real brokers."""

from tidings.codec import JsonCodec, Registry, event, registry
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

__all__ = [
    "ClosedError",
    "ConcurrencyError",
    "DeadLettered",
    "DecodeError",
    "HandlerTimeout",
    "JsonCodec",
    "Message",
    "NotFound",
    "QueueFull",
    "Registry",
    "ServiceUnavailable",
    "SyncInAsyncError",
    "TidingsError",
    "TransportError",
    "UnknownEventType",
    "event",
    "new_id",
    "registry",
]
