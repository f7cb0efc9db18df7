"""A Message's envelope as Kafka record headers (byte values).

The same headers as :func:`~tidings.transports.kit.wire.to_wire`, built in one step because it
runs for every record published; :func:`~tidings.transports.kit.wire.from_wire` reads them back.
"""

from __future__ import annotations

from tidings.message import Message
from tidings.transports.kit.wire import ID, KEY, TIME, TYPE

__all__ = ["record_headers"]

_SET_BY_ENVELOPE = frozenset({ID, TYPE, TIME, KEY})


def record_headers(message: Message) -> list[tuple[str, bytes]]:
    """The envelope, then the message's own headers except those the envelope sets."""
    headers = [
        (ID, message.id.encode()),
        (TYPE, message.type.encode()),
        (TIME, repr(message.timestamp).encode()),
    ]
    if message.key is not None:
        headers.append((KEY, message.key.encode()))
    if message.headers:
        headers += [
            (k, v.encode()) for k, v in message.headers.items() if k not in _SET_BY_ENVELOPE
        ]
    return headers
