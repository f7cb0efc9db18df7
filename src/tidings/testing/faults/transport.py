"""A transport that wraps another and injects broker faults: :class:`FaultyTransport`."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tidings.errors import ServiceUnavailable
from tidings.message import Message
from tidings.testing.faults.triggers import Trigger
from tidings.transports.base import (
    Delivery,
    LocalTransport,
    Pingable,
    Subscription,
    Transport,
)
from tidings.transports.kit.wire import ATTEMPT, ID, KEY, TIME, TYPE

if TYPE_CHECKING:
    from tidings.dead_letters import DeadLetterStore

__all__ = ["FaultKind", "FaultyTransport", "Injection"]

FaultKind = Literal[
    "duplicate", "corrupt_payload", "corrupt_headers", "drop_publishes", "drop_fetches"
]

_ENVELOPE = (ID, TYPE, TIME, KEY, ATTEMPT)
# Strings no one expects, yet every transport can carry: no NUL, which PostgreSQL text refuses.
_GARBAGE = "abcXYZ019 !\"#%&'()*+,-./:;<=>?@[\\]^_`{|}~\t\x01\x1b\x7fé€☃\u2028"


@dataclass(frozen=True, slots=True)
class Injection:
    """One fault injected: which, on what topic, and to which message (None for a publish or a
    fetch that failed as a whole)."""

    fault: FaultKind
    topic: str
    message_id: str | None


class FaultyTransport:
    """``inner`` with faults: everything passes through except where a fault's trigger strikes.

    ``duplicate``
        A delivery comes twice in its batch. The copy's ack and nack reach nobody, as when a
        broker redelivers a message whose ack was lost: the handler simply sees it again.
    ``corrupt_payload``
        A delivery's data is replaced by bytes that are not JSON (also on in-process transports,
        whose data are objects): decoding fails.
    ``corrupt_headers``
        A delivery's ``type``, ``key`` and header values become garbage strings, and garbage
        values appear under the tidings envelope header names; ``id``, ``time`` and the data
        stay as they were.
    ``drop_publishes`` / ``drop_fetches``
        A publish, or the subscription's next fetch, raises ServiceUnavailable as a broker
        outage would, before reaching ``inner``: nothing is lost, the caller must try again.

    Each fault is a :class:`~tidings.testing.faults.Trigger` (``Times(n)``, ``Chance(p,
    seed=…)``) or None; they are attributes, so a test can arm and disarm them while running.
    Message faults apply only to messages ``only`` accepts (all by default). Garbage comes from
    ``random.Random(seed)``. ``injected`` records every fault, in order.

    Around the in-process transport it is one too (a
    :class:`~tidings.transports.base.LocalTransport`): ``bus.drain()`` still waits for every
    message to be settled, and nothing held is lost when the bus closes.
    """

    def __init__(
        self,
        inner: Transport,
        *,
        duplicate: Trigger | None = None,
        corrupt_payload: Trigger | None = None,
        corrupt_headers: Trigger | None = None,
        drop_publishes: Trigger | None = None,
        drop_fetches: Trigger | None = None,
        only: Callable[[Message], bool] | None = None,
        seed: int = 0,
    ) -> None:
        self.inner = inner
        self.features = inner.features
        self.duplicate = duplicate
        self.corrupt_payload = corrupt_payload
        self.corrupt_headers = corrupt_headers
        self.drop_publishes = drop_publishes
        self.drop_fetches = drop_fetches
        self.only = only
        self.injected: list[Injection] = []
        self._random = random.Random(seed)

    def ids(self, fault: FaultKind) -> list[str]:
        """The ids of the messages ``fault`` was injected into, in order (with repeats)."""
        return [i.message_id for i in self.injected if i.fault == fault and i.message_id]

    def count(self, fault: FaultKind) -> int:
        """How many times ``fault`` was injected."""
        return sum(i.fault == fault for i in self.injected)

    # -- the Transport protocol ---------------------------------------------------------------

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        if self._strikes("drop_publishes", self.drop_publishes, topic):
            raise ServiceUnavailable(f"injected fault: connection dropped publishing to {topic}")
        await self.inner.publish(topic, messages)

    def subscribe(self, topic: str, *, group: str, prefetch: int = 256) -> Subscription:
        return _FaultySubscription(
            self, topic, self.inner.subscribe(topic, group=group, prefetch=prefetch)
        )

    def dead_letters(self) -> DeadLetterStore:
        return self.inner.dead_letters()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def ping(self) -> None:
        """The inner transport's ping; nothing to ask when it has none (in process)."""
        if isinstance(self.inner, Pingable):
            await self.inner.ping()

    # -- what an in-process inner transport adds (LocalTransport) ---------------------------------

    def offer(self, topic: str, message: Message) -> bool:
        """Never: every publish goes through :meth:`publish`, where faults strike."""
        return False

    def publish_nowait(self, topic: str, message: Message) -> None:
        raise TypeError("publish_nowait skips fault injection; use await publish()")

    def route(self, topic: str) -> Sequence[object]:
        return self._local().route(topic)

    def retire(self, topic: str, group: str) -> None:
        self._local().retire(topic, group)

    async def join(self) -> None:
        await self._local().join()

    def take_unhandled(self) -> list[tuple[str, str, list[Message]]]:
        return self._local().take_unhandled()

    def _local(self) -> LocalTransport:
        if not isinstance(self.inner, LocalTransport):
            raise TypeError(f"{type(self.inner).__name__} does not deliver in process")
        return self.inner

    # -- faults -------------------------------------------------------------------------------

    def _strikes(
        self, fault: FaultKind, trigger: Trigger | None, topic: str, message_id: str | None = None
    ) -> bool:
        if trigger is None or not trigger.strikes():
            return False
        self.injected.append(Injection(fault, topic, message_id))
        return True

    def _spoil(self, topic: str, batch: Sequence[Delivery]) -> list[Delivery]:
        spoiled: list[Delivery] = []
        for delivery in batch:
            message = delivery.message
            if self.only is not None and not self.only(message):
                spoiled.append(delivery)
                continue
            if self._strikes("corrupt_payload", self.corrupt_payload, topic, message.id):
                message = message.replace(data=b"\xff" + self._random.randbytes(15))
            if self._strikes("corrupt_headers", self.corrupt_headers, topic, message.id):
                message = self._garble(message)
            if message is not delivery.message:
                delivery = _Altered(delivery, message)
            spoiled.append(delivery)
            if self._strikes("duplicate", self.duplicate, topic, message.id):
                spoiled.append(_Copy(delivery))
        return spoiled

    def _garble(self, message: Message) -> Message:
        headers = {name: self._garbage() for name in message.headers}
        headers.update((name, self._garbage()) for name in _ENVELOPE)
        return message.replace(type=self._garbage(), key=self._garbage(), headers=headers)

    def _garbage(self) -> str:
        return "".join(self._random.choices(_GARBAGE, k=self._random.randint(1, 24)))

    def __repr__(self) -> str:
        return f"FaultyTransport({self.inner!r}, {len(self.injected)} faults injected)"


class _FaultySubscription:
    """The inner subscription's batches, spoiled; a dropped fetch raises and can be retried."""

    def __init__(self, transport: FaultyTransport, topic: str, inner: Subscription) -> None:
        self._transport = transport
        self._topic = topic
        self._inner = inner
        self._batches: AsyncIterator[Sequence[Delivery]] | None = None

    def __aiter__(self) -> _FaultySubscription:
        return self

    async def __anext__(self) -> Sequence[Delivery]:
        transport = self._transport
        if transport._strikes("drop_fetches", transport.drop_fetches, self._topic):
            raise ServiceUnavailable(f"injected fault: connection dropped fetching {self._topic}")
        if self._batches is None:
            self._batches = aiter(self._inner)
        return transport._spoil(self._topic, await anext(self._batches))

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Altered:
    """A delivery carrying another message; settling it settles the original."""

    def __init__(self, original: Delivery, message: Message) -> None:
        self._original = original
        self.message = message

    @property
    def attempt(self) -> int:
        return self._original.attempt

    @property
    def topic(self) -> str | None:
        topic: str | None = getattr(self._original, "topic", None)
        return topic

    async def ack(self) -> None:
        await self._original.ack()

    async def nack(self, delay: float = 0.0) -> None:
        await self._original.nack(delay)


class _Copy(_Altered):
    """A second delivery of the same message, whose settling reaches nobody."""

    def __init__(self, original: Delivery) -> None:
        super().__init__(original, original.message)

    async def ack(self) -> None:
        pass

    async def nack(self, delay: float = 0.0) -> None:
        pass
