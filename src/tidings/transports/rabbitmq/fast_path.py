"""A private bulk path for confirmed publishes: a window of messages in one socket write.

aiormq's public ``basic_publish`` costs, per message, a task, a lock round, a timeout scope and a
socket write: about 4,000 confirmed messages a second from one process here, against 15,000 for
this path, which marshals a window of messages into one buffer, hands it to the connection's
writer as a single write and registers each message's confirmation with the channel exactly as
``basic_publish`` does (the channel's lock, delivery-tag counter and confirmation futures).

That is aiormq's private bookkeeping, so this path runs only with the aiormq and pamqp versions it
was tested with (:data:`TESTED`); any other version publishes through the public path of
:mod:`.publish`. A test fails when the installed versions are not in :data:`TESTED`: test this
path with them (``tests/transports/test_rabbitmq.py``), then add them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

if TYPE_CHECKING:
    import aiormq

__all__ = ["ENABLED", "TESTED", "WINDOW", "installed", "write"]

TESTED = {"aiormq": ("7.2.4",), "pamqp": ("4.0.1",)}
"""The versions of each client this path was tested with."""
WINDOW = 512
"""Messages per write."""


def installed() -> dict[str, str | None]:
    """The installed version of each client in :data:`TESTED` (None if unknown)."""
    found: dict[str, str | None] = {}
    for name in TESTED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


ENABLED = all(v in TESTED[name] for name, v in installed().items())
"""Whether publishes take this path (the installed clients are tested ones)."""


async def write(
    channel: aiormq.Channel,
    routes: Sequence[tuple[str, str]],
    bodies: Sequence[bytes],
    props: Sequence[Basic.Properties],
    todo: Sequence[int],
) -> tuple[list[asyncio.Future[Any]], int]:
    """Write the messages at indexes ``todo`` (not mandatory), each to its route (exchange,
    routing key), a window per write; returns their confirmation futures and how many of
    ``todo`` were written before the channel closed."""
    methods: dict[tuple[str, str], bytes] = {}  # each route's method frame, marshalled once
    confirmations: list[asyncio.Future[Any]] = []
    written = 0
    try:
        for start in range(0, len(todo), WINDOW):
            chunk = todo[start : start + WINDOW]
            confirmations += await _write(channel, methods, routes, bodies, props, chunk)
            written += len(chunk)
    except (ChannelInvalidStateError, ConnectionError):
        pass  # the channel closed: what was not written is sent again
    return confirmations, written


async def _write(
    channel: aiormq.Channel,
    methods: dict[tuple[str, str], bytes],
    routes: Sequence[tuple[str, str]],
    bodies: Sequence[bytes],
    props: Sequence[Basic.Properties],
    chunk: Sequence[int],
) -> list[asyncio.Future[Any]]:
    """Marshal ``chunk`` into one write; returns the confirmation futures."""
    number = channel.number
    limit = channel.max_content_size
    marshal = frame.marshal
    async with channel.lock:  # raises ChannelInvalidStateError once the channel closed
        first = channel.delivery_tag + 1
        confirmations = []
        try:
            parts = []
            for i in chunk:
                body = bodies[i]
                channel.delivery_tag += 1
                confirmation = channel.create_future()
                channel.confirmations[channel.delivery_tag] = confirmation
                confirmations.append(confirmation)
                publish = methods.get(routes[i])
                if publish is None:
                    exchange, routing_key = routes[i]
                    method = Basic.Publish(exchange=exchange, routing_key=routing_key)
                    publish = methods[routes[i]] = frame.marshal(method, number)
                parts.append(publish)
                parts.append(marshal(ContentHeader(0, len(body), props[i]), number))
                for offset in range(0, len(body), limit):
                    parts.append(marshal(ContentBody(body[offset : offset + limit]), number))
            payload = ChannelFrame(payload=b"".join(parts), should_close=False)
            await channel.write_queue.put(payload)
        except BaseException:
            # Nothing reached the broker: give the delivery tags back, as basic_publish does.
            for tag in range(first, channel.delivery_tag + 1):
                channel.confirmations.pop(tag, None)
            channel.delivery_tag = first - 1
            for confirmation in confirmations:
                confirmation.cancel()
            raise
    return confirmations
