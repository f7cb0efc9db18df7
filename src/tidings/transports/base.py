"""The transport protocol: the one extension point for brokers.

A transport moves messages between publishers and subscribers; everything else (decoding, retry,
dead-lettering, concurrency, ordering) happens once, in the consumer loop, for every transport.

Contract
--------
``publish(topic, messages)``
    Returns once the transport accepted every message durably (broker ack, row committed, or queued
    in process for memory). Messages keep ``id``, ``headers``, ``key`` and ``time``; ``data`` is
    bytes, except on transports whose features say ``in_process`` (objects are passed as they are).
    Raises TransportError (ServiceUnavailable when the broker is unreachable).
``subscribe(topic, group=…)``
    A :class:`Subscription`: an async iterator of batches of :class:`Delivery`. Subscriptions of one
    group share the messages (competing consumers); every group gets every message. ``topic`` may be
    a wildcard pattern (see :mod:`tidings.topics`) when ``features.wildcards``.
``Delivery.ack()`` / ``Delivery.nack(delay)``
    Ack after the handler succeeded; nack makes the message come again after ``delay`` seconds
    (approximately; natively where ``features.native_delay``), with ``attempt`` one higher. A
    delivery neither acked nor nacked before its consumer dies comes again (persistent transports).
``dead_letters()``
    The dead-letter store that lives on the same broker or database.
``aclose()``
    Idempotent. Pending publishes finish; subscriptions end.

Transports that keep consumer groups on the broker also implement :class:`Groups`: a group's
lag, and dropping a group nobody consumes for any more (so it stops holding messages). Transports
that talk to a broker or a database implement :class:`Pingable`, which readiness checks use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tidings.message import Message

if TYPE_CHECKING:
    from tidings.dead_letters import DeadLetterStore

__all__ = [
    "Delivery",
    "Features",
    "GroupInfo",
    "Groups",
    "LocalTransport",
    "OwnsPartitions",
    "Pingable",
    "Subscription",
    "Transport",
]


@dataclass(frozen=True, slots=True)
class Features:
    """What a transport guarantees; the conformance suite reads these to decide what to check."""

    persistent: bool = False
    """Published messages survive the process (and a broker restart)."""
    ordered_per_key: bool = False
    """Messages with the same key reach one group in publish order, across all of the group's
    subscriptions, in any number of processes (the suite's scale-out cases check it)."""
    consumer_groups: bool = True
    """Subscriptions in one group split the messages; each group gets all of them."""
    native_delay: bool = False
    """``nack(delay)`` is honoured by the broker rather than timed in process."""
    replays_history: bool = False
    """A new group starts at the beginning of the topic's log instead of at its end."""
    wildcards: bool = True
    """``subscribe`` accepts ``*`` (one token) and ``>`` (one or more tokens) patterns."""
    in_process: bool = False
    """Messages carry event objects, never bytes; nothing leaves the process."""


@runtime_checkable
class Delivery(Protocol):
    """One message handed to one subscription, to be acknowledged once."""

    @property
    def message(self) -> Message: ...

    @property
    def attempt(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, and so on."""
        ...

    async def ack(self) -> None: ...

    async def nack(self, delay: float = 0.0) -> None: ...


class Subscription(Protocol):
    """Batches of deliveries for one (topic, group), until ``aclose()``."""

    def __aiter__(self) -> AsyncIterator[Sequence[Delivery]]: ...

    async def aclose(self) -> None:
        """Stop fetching. Deliveries handed out and not yet acked come again later."""


@runtime_checkable
class Transport(Protocol):
    """A broker or store that carries messages. See the module docstring for the contract."""

    features: Features

    async def start(self) -> None:
        """Connect. Idempotent; constructors do no I/O."""

    async def publish(self, topic: str, messages: Sequence[Message]) -> None: ...

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> Subscription: ...

    def dead_letters(self) -> DeadLetterStore: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LocalTransport(Transport, Protocol):
    """What a transport that delivers inside this process (``features.in_process``) adds: the
    bus's fast path and the means to lose nothing when it closes."""

    def offer(self, topic: str, message: Message) -> bool:
        """Queue ``message`` on every group of ``topic`` at once if all have room; False (and
        queue nothing) when one is full: then the caller awaits :meth:`publish`."""
        ...

    def publish_nowait(self, topic: str, message: Message) -> None:
        """Queue ``message`` now or raise QueueFull, queueing nothing."""

    def route(self, topic: str) -> Sequence[object]:
        """Where ``topic``'s messages go: one entry per group that receives it (none: nobody
        subscribes to it)."""
        ...

    def retire(self, topic: str, group: str) -> None:
        """Queue nothing more for ``group`` on ``topic``; its subscriptions end once what was
        queued for it is handled."""

    async def join(self) -> None:
        """Return once every message accepted so far was acknowledged."""

    def take_unhandled(self) -> list[tuple[str, str, list[Message]]]:
        """Close every channel; each one's topic, group and the messages no consumer took."""
        ...


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One consumer group's subscription to one topic (or pattern), as the broker keeps it."""

    topic: str
    """The topic or pattern the group subscribed to, as given to ``subscribe``."""
    group: str
    lag: int
    """Messages published to it that the group has not acknowledged yet (in flight included)."""
    in_flight: int | None
    """Messages handed to a consumer of the group and not settled yet; None where unknown."""
    last_active: float | None
    """When a consumer of the group last fetched (Unix time); None where unknown."""


@runtime_checkable
class Groups(Protocol):
    """The consumer groups a transport keeps: see how far behind each is, drop those whose
    consumers are gone (a renamed handler's group otherwise keeps its messages forever)."""

    async def groups(self) -> list[GroupInfo]:
        """Every group on every topic, sorted by topic then group."""
        ...

    async def drop_group(self, topic: str, group: str) -> None:
        """Forget ``group``'s subscription to ``topic`` and what it has not acknowledged.

        Raises NotFound if there is no such group. Stop the group's consumers first: one still
        running subscribes again as a new group would (from the oldest message kept).
        """


@runtime_checkable
class OwnsPartitions(Protocol):
    """A subscription that reads keyed messages of the partitions it owns, not of the others
    (those its group's other subscriptions own)."""

    def partitions(self) -> frozenset[int]:
        """The partitions whose keyed messages it reads now."""
        ...


@runtime_checkable
class Pingable(Protocol):
    """A transport that can tell whether its broker or database answers right now."""

    async def ping(self) -> None:
        """One round trip to the broker; raises ServiceUnavailable when it does not answer."""
