"""How a bus hands messages to its transport: encoding, the size limit, and observed sending.

The bus itself keeps the fastest path (an in-process offer with nothing observed); everything
else comes here. Publishes to a broker that overlap go in one call (:mod:`tidings.coalescing`).
With an observer, each publish runs inside its ``send`` span, and the messages carry the span's
context in their headers to the handlers, in process or across brokers.
"""

from __future__ import annotations

from collections.abc import Callable

from tidings.coalescing import Coalescer
from tidings.codec import Codec, encoded
from tidings.message import Message
from tidings.telemetry import Observer
from tidings.transports.base import LocalTransport, Transport

__all__ = ["Sender"]


class Sender:
    """Publishes a bus's messages on its transport."""

    __slots__ = (
        "_coalescer",
        "_codec",
        "_local",
        "_max_size",
        "_offer",
        "_transport",
        "observer",
    )

    def __init__(
        self,
        transport: Transport,
        local: LocalTransport | None,
        codec: Codec,
        max_size: int | None,
    ) -> None:
        self._transport = transport
        self._local = local
        self._offer: Callable[[str, Message], bool] | None = local.offer if local else None
        self._codec = codec
        self._max_size = max_size
        self._coalescer = Coalescer(transport.publish)
        self.observer: Observer | None = None

    def outgoing(self, message: Message) -> Message:
        """The message as the transport carries it: encoded (and its size checked, raising
        MessageTooLarge) unless the transport is in process."""
        if self._local is not None:
            return message
        return encoded(message, self._codec, self._max_size)

    async def send(self, topic: str, message: Message) -> Message:
        """Publish one message; returns it as sent (with its trace context, if observed)."""
        observer = self.observer
        if observer is None:
            if self._local is None:
                await self._coalescer.send(topic, self.outgoing(message))
            else:  # waits for room: each publish on its own, all or nothing (bus.publish)
                await self._transport.publish(topic, [message])
            return message
        with observer.sending(topic, [message]) as (carried,):
            if self._offer is None or not self._offer(topic, carried):
                await self._transport.publish(topic, [self.outgoing(carried)])
        return carried

    async def send_many(self, by_topic: dict[str, list[Message]]) -> None:
        """Publish each topic's messages in one transport call."""
        for topic, messages in by_topic.items():
            if self.observer is None:
                await self._transport.publish(topic, [self.outgoing(m) for m in messages])
                continue
            with self.observer.sending(topic, messages) as carried:
                await self._transport.publish(topic, [self.outgoing(m) for m in carried])

    def send_nowait(self, topic: str, message: Message) -> Message:
        """Queue one message in process now, or raise QueueFull (TypeError on a broker)."""
        if self._local is None:
            raise TypeError("publish_nowait needs the in-process transport; use await publish()")
        if self.observer is None:
            self._local.publish_nowait(topic, message)
            return message
        with self.observer.sending(topic, [message]) as (carried,):
            self._local.publish_nowait(topic, carried)
        return carried
