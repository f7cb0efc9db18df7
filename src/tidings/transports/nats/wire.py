"""NATS protocol commands built by hand, and the one way they reach a nats-py connection.

nats-py's ``Client.publish`` checks and encodes every header with a regular expression and costs
about 10 µs per message carrying tidings' envelope; its ``Msg.ack`` is a full ``publish`` too. On
the hot path this module builds each ``HPUB``/``PUB`` command with one bytes format instead and
appends whole batches to the client's outgoing buffer, which the client's own flusher writes and
which it replays after a reconnect. :func:`send` is the only code that touches nats-py's private
members (``_send_command``, ``_flush_queue``, ``_flush_pending``: the three its ``publish`` uses);
the version range of the ``nats`` extra pins them.

Envelope on the wire: the message id travels as ``Nats-Msg-Id`` (JetStream de-duplicates
re-sent messages by it), type, time and key as the ``tidings-*`` headers of
:mod:`tidings.transports.kit.wire`, the user's headers beside them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nats.aio.client import Client as NATS

from tidings.errors import ClosedError
from tidings.message import Headers, Message
from tidings.topics import validate_pattern
from tidings.transports.kit.wire import ID, from_wire, to_wire

__all__ = [
    "MSG_ID",
    "Connection",
    "ack_command",
    "decode",
    "publish_commands",
    "send",
    "subject_for",
]

MSG_ID = "Nats-Msg-Id"
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII without ':' (RFC 7230 token-ish)
_SUBJECT_TOKEN = re.compile(r"[^\s*>]+")
_checked_names: set[str] = set()


def subject_for(prefix: str, topic: str) -> str:
    """The NATS subject of ``topic`` (a pattern is allowed) under ``prefix``.

    Raises ValueError for an empty token, a misplaced wildcard or whitespace, which NATS would
    otherwise read as a protocol separator.
    """
    validate_pattern(topic)
    if any(not _SUBJECT_TOKEN.fullmatch(t) for t in topic.split(".") if t not in ("*", ">")):
        raise ValueError(f"topic {topic!r} contains whitespace")
    return f"{prefix}.{topic}"


def publish_commands(
    subject: str, reply: str, messages: Sequence[Message], max_payload: int
) -> list[bytes]:
    """One ``HPUB subject reply …`` per message; ValueError when a message cannot travel."""
    head = f"HPUB {subject} {reply} ".encode()
    commands: list[bytes] = []
    append = commands.append
    for message in messages:
        headers = to_wire(message)
        headers[MSG_ID] = headers.pop(ID)
        if message.headers:
            _check_names(message.headers)
        text = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        # Each header line has one CR and one LF; any other would end the header block early.
        if text.count("\n") != len(headers) or text.count("\r") != len(headers):
            raise ValueError(f"a header, type or key of message {message.id} contains CR or LF")
        block = b"NATS/1.0\r\n%b\r\n" % text.encode()
        data = message.data
        size = len(block) + len(data)
        if size > max_payload:
            raise ValueError(
                f"message {message.id} has {size} bytes with headers; the limit is {max_payload}"
            )
        append(b"%b%d %d\r\n%b%b\r\n" % (head, len(block), size, block, data))
    return commands


def _check_names(headers: Headers) -> None:
    for name in headers:
        if name not in _checked_names:
            if not _HEADER_NAME.fullmatch(name) or name == MSG_ID:
                raise ValueError(f"header name {name!r} cannot travel as a NATS header")
            _checked_names.add(name)


def ack_command(reply: str, payload: bytes) -> bytes:
    """The acknowledgement ``payload`` (``+ACK``, ``-NAK …``) for the delivery with ``reply``."""
    return b"PUB %b %d\r\n%b\r\n" % (reply.encode(), len(payload), payload)


def decode(topic: str, data: bytes, headers: dict[str, str] | None) -> Message:
    """The message that :func:`publish_commands` sent, or another producer's with the fallbacks
    of :func:`~tidings.transports.kit.wire.from_wire`. ``headers`` is consumed. The attempt is the
    server's delivery count, not a header."""
    ident = headers.pop(MSG_ID, None) if headers else None
    return from_wire(topic, data, headers, ident=ident)[0]


class Connection(NATS):
    """A nats-py client that reads plain header blocks faster.

    nats-py parses each header line in Python with a per-character check of the name, which was a
    quarter of the CPU time of consuming tidings messages (three envelope headers each). Blocks
    without an inline status (``NATS/1.0\\r\\n…``: every published message) are split here;
    status blocks (``NATS/1.0 408 …``) still go to nats-py.
    """

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        if not headers:
            return None
        if headers[8:10] != b"\r\n":
            return await super()._process_headers(headers)
        parsed = {}
        for line in headers[10:].decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                parsed[name.strip()] = value.strip()
        return parsed or None


async def send(nc: NATS, commands: bytes) -> None:
    """Queue ``commands`` on the connection; its flusher writes them soon, in bulk.

    While the client reconnects they wait in its buffer and go out after the reconnect.
    Raises ClosedError when the connection was closed.
    """
    if nc.is_closed:
        raise ClosedError("the NATS connection is closed")
    await nc._send_command(commands)
    flush_queue = nc._flush_queue
    if flush_queue is not None and flush_queue.empty():
        await nc._flush_pending()
