"""Confirmed publishing on one AMQP channel, in bulk.

Per-message cost decides RabbitMQ throughput from Python, and with aiormq's ``basic_publish`` each
message costs a task, a lock round, a socket write and a marshalled method frame. The bulk path
instead marshals a window of messages into one buffer and hands it to the connection's writer as a
single write, registering each message's confirmation with the channel exactly as
``basic_publish`` does (the channel's lock, delivery-tag counter and confirmation futures), then
awaits all confirmations at once. Publishes that must come back when unroutable (``mandatory``) go
through ``basic_publish``, which matches returned messages to their publish.

Both report the messages a closed channel or connection left unconfirmed, so that the caller can
send them again on the next channel; they raise the client's error for anything final (a nack, a
returned message).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiormq
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelClosed, ChannelInvalidStateError
from pamqp import frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

__all__ = ["WINDOW", "lost", "send"]

WINDOW = 512
"""Messages per write."""


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the channel or connection went away (worth sending again)."""
    return (
        isinstance(exc, ConnectionError | ChannelInvalidStateError | asyncio.CancelledError)
        or type(exc) is ChannelClosed
    )


async def send(
    channel: aiormq.Channel,
    exchange: str,
    routing_key: str,
    bodies: Sequence[bytes],
    props: Sequence[Basic.Properties],
    todo: Sequence[int],
    *,
    mandatory: bool,
) -> list[int]:
    """Publish the messages at indexes ``todo`` and await their confirmations; returns the
    indexes to send again after a reconnect. Raises the first final error."""
    if mandatory or not _can_batch(channel):
        outcomes = await asyncio.gather(
            *[
                channel.basic_publish(
                    bodies[i],
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=props[i],
                    mandatory=mandatory,
                    wait=False,
                )
                for i in todo
            ],
            return_exceptions=True,
        )
        return _sorted(todo, outcomes)
    method = Basic.Publish(exchange=exchange, routing_key=routing_key)
    confirmations: list[asyncio.Future[Any]] = []
    written = 0
    try:
        for start in range(0, len(todo), WINDOW):
            chunk = todo[start : start + WINDOW]
            confirmations += await _write(channel, method, bodies, props, chunk)
            written += len(chunk)
    except (ChannelInvalidStateError, ConnectionError):
        pass  # the channel closed: what was not written is sent again
    outcomes = await asyncio.gather(*confirmations, return_exceptions=True)
    return _sorted(todo[:written], outcomes) + list(todo[written:])


async def _write(
    channel: aiormq.Channel,
    method: Basic.Publish,
    bodies: Sequence[bytes],
    props: Sequence[Basic.Properties],
    chunk: Sequence[int],
) -> list[asyncio.Future[Any]]:
    """Marshal ``chunk`` into one write; returns the confirmation futures."""
    number = channel.number
    publish = frame.marshal(method, number)  # the same method frame for every message
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


def _can_batch(channel: aiormq.Channel) -> bool:
    """Whether this aiormq keeps the bookkeeping the bulk path shares with basic_publish."""
    return all(
        hasattr(channel, name)
        for name in ("confirmations", "delivery_tag", "write_queue", "max_content_size")
    )


def _sorted(todo: Sequence[int], outcomes: Sequence[Any]) -> list[int]:
    """The indexes to send again; raises the first final error."""
    retry = []
    for i, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not lost(outcome):
                raise outcome
            retry.append(i)
    return retry
