"""The outbox relay: publishes every stored event to a transport, at least once.

Events are read from the store's global log after the relay's checkpoint, published in batches,
and the checkpoint moves past a batch only once ``publish`` returned (the transport confirmed it).
A crash (or cancellation) between the two publishes the batch again on restart with the same
message ids (the stored event ids), so consumers deduplicate by ``Message.id`` and an event is
published if and only if it was stored.

Each message carries the event name as ``type``, the stream as ``key`` (per-aggregate ordering on
transports that order by key), the event's metadata as ``headers`` and its record time. ``data`` is
the JSON payload (upcast to the current schema version when its class is registered), or the
decoded event object for in-process transports (``features.in_process``), which carry objects.

The metadata holds the trace context of the append when the store traced it, so the consumers'
``process`` spans continue that trace. When the store traces, each publish call is a ``send``
span (PRODUCER), a child of that context when the call's events share one, else linked to each
(:meth:`~tidings.telemetry.tracing.SpanMaker.relay`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from itertools import groupby
from typing import Protocol

from tidings.codec import Codec, Registry, registry
from tidings.eventsourcing.projection import read_batches
from tidings.eventsourcing.store import EventStore, RecordedEvent
from tidings.eventsourcing.upcasting import EventMapper, Upcasters
from tidings.message import Message
from tidings.telemetry.systems import system_of
from tidings.telemetry.tracing import SpanMaker

__all__ = ["OutboxRelay", "Publisher"]


class Publisher(Protocol):
    """Anything that publishes messages to a topic and returns once they are accepted durably:
    every :class:`~tidings.transports.Transport` is one."""

    async def publish(self, topic: str, messages: Sequence[Message]) -> None: ...


def _event_name(recorded: RecordedEvent) -> str:
    return recorded.type


class OutboxRelay:
    """Relays the store's events to ``publisher``; one relay per ``name`` at a time.

    ``topic`` maps a stored event to its topic (the event name by default, which is the topic
    that ``Bus.subscribe(EventClass)`` listens on). Consecutive events of one topic are published
    in one call. Publishing errors propagate out of :meth:`run` with the checkpoint before the
    failed batch, so a restarted relay tries that batch again.
    """

    def __init__(
        self,
        store: EventStore,
        publisher: Publisher,
        *,
        name: str = "outbox",
        topic: Callable[[RecordedEvent], str] = _event_name,
        batch_size: int = 500,
        codec: Codec | None = None,
        registry: Registry = registry,
        upcasters: Upcasters | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.publisher = publisher
        self.name = name
        self.topic = topic
        self.batch_size = batch_size
        features = getattr(publisher, "features", None)
        self._objects = bool(getattr(features, "in_process", False))
        self._events = EventMapper(codec=codec, registry=registry, upcasters=upcasters)

    async def run(self) -> None:
        """Publish from the checkpoint on, then follow new events until cancelled (or the store
        closes)."""
        after = await self.store.get_checkpoint(self.name)
        spans = self._spans()
        async for batch in read_batches(self.store, after=after, size=self.batch_size, follow=True):
            await self._relay(batch, spans)

    async def relay_pending(self) -> int:
        """Publish everything stored up to now and return how many events were published."""
        after = await self.store.get_checkpoint(self.name)
        head = await self.store.head_position()
        spans = self._spans()
        count = 0
        async for batch in read_batches(self.store, after=after, size=self.batch_size, until=head):
            await self._relay(batch, spans)
            count += len(batch)
        return count

    def _spans(self) -> SpanMaker | None:
        """The relay's spans, when the (started) store traces."""
        observer = self.store.observer
        if observer is None:
            return None
        return observer.messaging(system_of(type(self.publisher).__module__))

    async def _relay(self, batch: Sequence[RecordedEvent], spans: SpanMaker | None) -> None:
        for topic, records in groupby(batch, key=self.topic):
            messages = [self._message(r) for r in records]
            with nullcontext() if spans is None else spans.relay(topic, messages):
                await self.publisher.publish(topic, messages)
        await self.store.set_checkpoint(self.name, batch[-1].position)

    def _message(self, recorded: RecordedEvent) -> Message:
        events = self._events
        data = events.to_event(recorded) if self._objects else events.current_data(recorded)
        return Message(
            recorded.type,
            data,
            dict(recorded.metadata),
            recorded.stream,
            recorded.id,
            recorded.recorded_at.timestamp(),
        )
