"""The one place that uses nats-py's private members, for speed, and only with versions it was
tested with.

nats-py's public ``Client.publish`` checks and encodes each header in Python (about 10 µs per
message with tidings' envelope), and its header parser spends about 3 µs per received message:
on B6 the transport ran at about 0.75x of the raw client with the public path alone, against
about 1.0x with this one. With a nats-py version in :data:`TESTED`:

* :func:`send` writes a chunk of publishes as one buffer of ``HPUB`` commands through the three
  members ``Client.publish`` itself uses (``_send_command``, ``_flush_queue``,
  ``_flush_pending``), so the client's flusher writes them and replays them after a reconnect;
* :func:`reply_all` writes the acknowledgements (``+ACK``, ``-NAK``, ``+WPI``) of a loop turn as
  one buffer of ``PUB`` commands the same way (``Client.publish`` for each costs about 4 µs, a
  tenth of a message's whole cost to a subscription);
* :func:`client` is a client whose ``_process_headers`` splits plain header blocks itself (status
  blocks still go to nats-py), decoding names and values that are not UTF-8 with replacement
  characters.

With any other version all fall back to the public API (:func:`public_send`,
:func:`public_reply_all`, ``Client()``),
and ``tests/transports/test_nats.py`` fails until someone has run the NATS tests and the B6
benchmark with the new version and added it to :data:`TESTED`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version

import nats.errors
from nats.aio.client import Client as NATS

__all__ = [
    "ENABLED",
    "TESTED",
    "ReplyAll",
    "Send",
    "client",
    "public_reply_all",
    "public_send",
    "reply_all",
    "send",
]

TESTED = ("2.16.0",)
"""nats-py versions whose private members this module was checked against."""
ENABLED = version("nats-py") in TESTED

Chunk = Sequence[tuple[bytes, dict[str, str], bytes]]
"""Payloads, their headers and the same as a header block (as
:func:`~tidings.transports.nats.wire.headers_for` made them)."""
Send = Callable[[NATS, str, str, Chunk], Awaitable[None]]
"""Publish a chunk to a subject with a reply subject."""
Replies = Sequence[tuple[str, bytes]]
"""Reply subjects and payloads without headers."""
ReplyAll = Callable[[NATS, Replies], Awaitable[None]]
"""Publish each payload to its reply subject."""


async def public_send(nc: NATS, subject: str, reply: str, chunk: Chunk) -> None:
    """One ``Client.publish`` per message: the client buffers them, its flusher writes them."""
    publish = nc.publish
    for data, headers, _ in chunk:
        await publish(subject, data, reply=reply, headers=headers)


async def public_reply_all(nc: NATS, replies: Replies) -> None:
    """One ``Client.publish`` per reply."""
    publish = nc.publish
    for subject, payload in replies:
        await publish(subject, payload)


async def _private_send(nc: NATS, subject: str, reply: str, chunk: Chunk) -> None:
    """The same commands as :func:`public_send`, built with one bytes format each."""
    head = f"HPUB {subject} {reply} ".encode()
    commands = [
        b"%b%d %d\r\n%b%b\r\n" % (head, len(block), len(block) + len(data), block, data)
        for data, _, block in chunk
    ]
    await _write(nc, b"".join(commands))


async def _private_reply_all(nc: NATS, replies: Replies) -> None:
    """The same commands as :func:`public_reply_all`, built with one bytes format each."""
    commands = [
        b"PUB %b %d\r\n%b\r\n" % (subject.encode(), len(payload), payload)
        for subject, payload in replies
    ]
    await _write(nc, b"".join(commands))


async def _write(nc: NATS, commands: bytes) -> None:
    """Hand ``commands`` to the client's buffer as ``Client.publish`` does."""
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    await nc._send_command(commands)
    flush_queue = nc._flush_queue
    if flush_queue is not None and flush_queue.empty():
        await nc._flush_pending()


class _Connection(NATS):
    """A nats-py client that reads plain header blocks faster (see the module docstring)."""

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        if not headers:
            return None
        if headers[8:10] != b"\r\n":  # an inline status (NATS/1.0 408 …): nats-py's
            return await super()._process_headers(headers)
        parsed = {}
        for line in headers[10:].decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                parsed[name.strip()] = value.strip()
        return parsed or None


send: Send = _private_send if ENABLED else public_send
reply_all: ReplyAll = _private_reply_all if ENABLED else public_reply_all


def client() -> NATS:
    """A new, unconnected nats-py client (the faster one when :data:`ENABLED`)."""
    return _Connection() if ENABLED else NATS()
