"""Exceptions raised by tidings.

Every error the library raises on purpose derives from :class:`TidingsError`::

    TidingsError
    ├── DecodeError            bytes or a payload that does not fit the event type
    ├── UnknownEventType       an event name with no registered class
    ├── QueueFull              publish_nowait on a full subscription channel
    ├── MessageTooLarge        a payload past the bus's max_message_size
    ├── ClosedError            use of a bus, transport or store after aclose()
    ├── SyncInAsyncError       a synchronous facade called from inside a running event loop
    ├── HandlerTimeout         a handler ran past its timeout (also a TimeoutError)
    ├── DeadLettered           a message was moved to the dead-letter store after its last attempt
    ├── TransportError         a broker or database failed; the client's error is the __cause__
    │   └── ServiceUnavailable a broker could not be reached
    ├── ConcurrencyError       an append found another version than the expected one
    ├── StreamDeleted          an append to, or a read of, a stream that was deleted
    ├── NotFound               a stream, aggregate or dead letter that does not exist
    ├── CorruptRecord          a stored commit or dead letter that cannot be read back
    └── NotHandled             recorded for messages a bus closed before handling them

Errors from broker clients are mapped at the transport boundary (``raise TransportError(...) from
exc``) so application code never needs to import a broker client to catch them.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "ConcurrencyError",
    "CorruptRecord",
    "DeadLettered",
    "DecodeError",
    "HandlerTimeout",
    "MessageTooLarge",
    "NoResponder",
    "NotFound",
    "NotHandled",
    "QueueFull",
    "RequestTimeout",
    "ServiceUnavailable",
    "StreamDeleted",
    "STOPPING_PROCESS",
    "SyncInAsyncError",
    "TidingsError",
    "TransportError",
    "UnknownEventType",
]


class TidingsError(Exception):
    """Base class of every error tidings raises on purpose."""


class DecodeError(TidingsError, ValueError):
    """Bytes or a payload could not be turned into the expected event type.

    ``type_name`` names the event type, ``path`` the offending field (``$.amount``) when known.
    """

    def __init__(self, type_name: str, reason: str, path: str | None = None) -> None:
        self.type_name = type_name
        self.reason = reason
        self.path = path
        where = f" at {path}" if path else ""
        super().__init__(f"cannot decode {type_name}{where}: {reason}")


class UnknownEventType(TidingsError, LookupError):
    """A message names an event type that no class is registered for."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no event class is registered under the name {name!r}")


class QueueFull(TidingsError):
    """``publish_nowait`` found a subscription channel at its capacity."""


class MessageTooLarge(TidingsError, ValueError):
    """A message's encoded payload is larger than the bus allows (``Bus(max_message_size=…)``).

    Raised by ``publish`` before anything is sent; a consumer dead-letters such a message from
    another producer without decoding it (a payload of tens of megabytes would stall the loop).
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the payload is {size:,} bytes; the limit is {limit:,} (max_message_size)"
        )


class ClosedError(TidingsError):
    """The bus, transport or store was used after it was closed."""


class SyncInAsyncError(TidingsError, RuntimeError):
    """A synchronous facade was called from a thread whose event loop is running.

    Blocking there would deadlock the loop; use the ``await``-able method instead.
    """


class HandlerTimeout(TidingsError, TimeoutError):
    """A handler did not finish within its timeout."""

    def __init__(self, handler: str, seconds: float) -> None:
        self.handler = handler
        self.seconds = seconds
        super().__init__(f"handler {handler} did not finish within {seconds:g}s")


class DeadLettered(TidingsError):
    """A message failed its last attempt and is now in the dead-letter store.

    Raised by the dead-letter middleware so that the consumer acknowledges the message (it is safe
    in the store) while callers of ``publish_and_wait`` still see the failure; the handler's own
    exception is ``__cause__``.
    """

    def __init__(self, dead_letter_id: str, error: BaseException) -> None:
        self.dead_letter_id = dead_letter_id
        self.error = error
        super().__init__(f"dead-lettered as {dead_letter_id}: {type(error).__name__}: {error}")


class RequestTimeout(TidingsError, TimeoutError):
    """No reply to ``bus.request`` came within its timeout (no handler replies on that topic, or
    none finished in time)."""

    def __init__(self, topic: str, seconds: float) -> None:
        self.topic = topic
        self.seconds = seconds
        super().__init__(f"no reply to a request on {topic!r} within {seconds:g}s")


class NoResponder(TidingsError, LookupError):
    """``bus.request`` in process, and no route of the bus takes the request's topic."""


class TransportError(TidingsError):
    """A broker or database operation failed; the client's exception is ``__cause__``."""


class ServiceUnavailable(TransportError, ConnectionError):
    """A broker or database could not be reached."""


class ConcurrencyError(TidingsError):
    """An append expected a stream version that is not the stream's current version."""

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else actual
        super().__init__(
            f"stream {stream!r}: expected version {expected!r}, but the stream is at {shown}"
        )


class NotFound(TidingsError, LookupError):
    """A stream, aggregate or dead letter does not exist."""


class CorruptRecord(TidingsError, ValueError):
    """A stored record cannot be read back: its bytes or fields are not what tidings wrote.

    ``store`` names the store (``SQLite event store 'events.db'``), ``record`` the record in it
    (``stream 'account-1' versions 3-4, positions 7-8``, ``dead letter '0193…'``) and ``reason``
    what is wrong. The record stays where it is: nothing is deleted or rewritten.
    """

    def __init__(self, store: str, record: str, reason: str) -> None:
        self.store = store
        self.record = record
        self.reason = reason
        super().__init__(f"corrupt record in {store}: {record}: {reason}")


class StreamDeleted(TidingsError):
    """The stream was deleted: its events are erased and its name cannot be used again."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} was deleted; its name cannot be used again")


class NotHandled(TidingsError):
    """Recorded in the dead-letter store for messages the bus closed before handling."""


STOPPING_PROCESS = (KeyboardInterrupt, SystemExit)
"""What a handler may raise that stops the process rather than fails the handler: never caught
as the handler's failure, on any path."""
