"""The conformance suite every transport passes: :class:`TransportSuite`.

Modelled on watermill's universal pub/sub tests and told each transport's
:class:`~tidings.transports.Features`: a case a transport does not claim is skipped. A test module
subclasses the suite and provides its fixtures::

    class TestSqlite(TransportSuite):
        @pytest.fixture
        def transport_factory(self, tmp_path):
            return lambda: SqliteTransport(f"sqlite:///{tmp_path}/t.db")

        @pytest.fixture
        def restart_service(self):     # optional: an async callable restarting the broker
            return None

        @pytest.fixture
        def foreign_publish(self):     # optional: writes with the broker's own client
            return None                # (see tidings.testing.suite_foreign)

        @pytest.fixture
        def scale_url(self):           # optional: the URL worker processes open
            return None                # (see tidings.testing.suite_scale)

``transport_factory`` returns a NEW transport, not yet started, on the same broker and namespace
on every call, so a case can open a second consumer or reopen after close. Every case uses its
own topics and groups. Cases marked ``stress`` repeat the work with more messages, several at
once (``make test-stress``).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tidings.message import Message
from tidings.testing.receiver import (
    Receiver,
    TransportFactory,
    opened,
    unique,
    until,
)
from tidings.testing.suite_base import RestartService, messages
from tidings.testing.suite_bus import BusCases
from tidings.testing.suite_cloudevents import CloudEventsCases
from tidings.testing.suite_dead_letters import DeadLetterCases
from tidings.testing.suite_durable import DurabilityCases
from tidings.testing.suite_faults import FaultCases
from tidings.testing.suite_foreign import ForeignProducerCases
from tidings.testing.suite_outcomes import OutcomeCases
from tidings.testing.suite_ping import PingCases
from tidings.testing.suite_requests import RequestCases
from tidings.testing.suite_scale import ScaleOutCases
from tidings.testing.suite_telemetry import TelemetryCases
from tidings.testing.suite_topics import TopicCases
from tidings.transports.base import Delivery, Transport

__all__ = ["RestartService", "TransportSuite"]


class TransportSuite(
    DurabilityCases,
    FaultCases,
    ForeignProducerCases,
    CloudEventsCases,
    TelemetryCases,
    OutcomeCases,
    RequestCases,
    PingCases,
    BusCases,
    DeadLetterCases,
    TopicCases,
    ScaleOutCases,
):
    """The cases; see the module docstring for the fixtures a subclass provides."""

    # -- publishing and receiving -------------------------------------------------------------

    async def test_publish_subscribe(self, transport_factory: TransportFactory) -> None:
        """100 messages arrive with id, type, payload, headers, key and time intact."""
        await self.publish_subscribe(transport_factory, 100)

    async def publish_subscribe(self, factory: TransportFactory, count: int) -> None:
        topic = unique("suite.pubsub")
        sent = messages(count, key=lambda n: f"key-{n % 7}" if n % 2 else None)
        async with opened(factory) as transport:
            (receiver,) = await self.receive(transport, topic, unique("group"))
            for start in range(0, count, 40):
                await transport.publish(topic, sent[start : start + 40])
            await receiver.until_ids([m.id for m in sent])
            got = {m.id: m for m in receiver.messages}
            for message in sent:
                assert got[message.id] == message, "id, type, data, headers and key survive"
                assert got[message.id].timestamp == pytest.approx(message.timestamp, abs=1e-3)
            await receiver.aclose()

    async def test_concurrent_publishers(self, transport_factory: TransportFactory) -> None:
        """50 tasks publishing 100 messages each, one by one: all 5,000 arrive."""
        await self.concurrent_publishers(transport_factory, 50, 100)

    async def concurrent_publishers(
        self, factory: TransportFactory, publishers: int, each: int
    ) -> None:
        topic = unique("suite.concurrent")
        batches = [messages(each, prefix=f"{p}-") for p in range(publishers)]

        async def publish(transport: Transport, batch: list[Message]) -> None:
            for message in batch:
                await transport.publish(topic, [message])

        async with opened(factory) as transport:
            (receiver,) = await self.receive(transport, topic, unique("group"))
            await asyncio.gather(*(publish(transport, batch) for batch in batches))
            await receiver.until_ids([m.id for batch in batches for m in batch])
            await receiver.aclose()

    async def test_many_topics(self, transport_factory: TransportFactory) -> None:
        """20 topics at once: each subscription gets its own topic's messages and no others."""
        topics = [unique("suite.many") for _ in range(20)]
        sent = {topic: messages(10) for topic in topics}
        async with opened(transport_factory) as transport:
            receivers = {}
            for topic in topics:
                (receivers[topic],) = await self.receive(transport, topic, unique("group"))
            await asyncio.gather(*(transport.publish(t, m) for t, m in sent.items()))
            for topic, receiver in receivers.items():
                await receiver.until_ids([m.id for m in sent[topic]], f"messages of {topic}")
                assert receiver.ids == {m.id for m in sent[topic]}
                await receiver.aclose()

    async def test_topic_isolation(self, transport_factory: TransportFactory) -> None:
        """A subscription never sees messages of another topic, even one sharing a prefix."""
        first, second = unique("suite.iso"), unique("suite.iso")
        async with opened(transport_factory) as transport:
            (a,) = await self.receive(transport, first, unique("group"))
            (b,) = await self.receive(transport, f"{first}.sub", unique("group"))
            to_first, to_sub, to_second = messages(10), messages(5), messages(3)
            await transport.publish(second, to_second)
            await transport.publish(f"{first}.sub", to_sub)
            await transport.publish(first, to_first)
            await a.until_ids([m.id for m in to_first])
            await b.until_ids([m.id for m in to_sub])
            sentinel = messages(1)
            await transport.publish(first, sentinel)
            await a.until_ids([m.id for m in sentinel])
            assert a.ids == {m.id for m in to_first + sentinel}
            assert b.ids == {m.id for m in to_sub}
            await a.aclose()
            await b.aclose()

    async def test_wildcards(self, transport_factory: TransportFactory) -> None:
        """``*`` matches one token, ``>`` one or more."""
        if not self.features(transport_factory).wildcards:
            pytest.skip("the transport does not support wildcard subscriptions")
        base = unique("suite.wild")
        one, deep, other = messages(3), messages(4), messages(2)
        async with opened(transport_factory) as transport:
            # Subscribed (and primed) on concrete topics first, so patterns need no probes.
            (star,) = await self.receive(transport, f"{base}.*", unique("group"))
            (tail,) = await self.receive(transport, f"{base}.>", unique("group"))
            await transport.publish(f"{base}.a", one)
            await transport.publish(f"{base}.b.c", deep)
            await transport.publish(f"{base}x.a", other)
            await star.until_ids([m.id for m in one])
            await tail.until_ids([m.id for m in one + deep])
            sentinel = messages(1)
            await transport.publish(f"{base}.z", sentinel)
            await star.until_ids([m.id for m in sentinel])
            await tail.until_ids([m.id for m in sentinel])
            assert star.ids == {m.id for m in one + sentinel}
            assert tail.ids == {m.id for m in one + deep + sentinel}
            await star.aclose()
            await tail.aclose()

    # -- acknowledgement ----------------------------------------------------------------------

    async def test_nack_resends(self, transport_factory: TransportFactory) -> None:
        """A nacked message comes again with its attempt counted; the others are not held up."""
        topic, sent = unique("suite.nack"), messages(20)
        nacked = {sent[0].id, sent[5].id}

        async def settle(delivery: Delivery) -> None:
            if delivery.message.id in nacked and delivery.attempt < 3:
                await delivery.nack()
            else:
                await delivery.ack()

        async with opened(transport_factory) as transport:
            (receiver,) = await self.receive(transport, topic, unique("group"), settle=settle)
            await transport.publish(topic, sent)
            await receiver.until(
                lambda: sum(d.attempt == 3 for d in receiver.deliveries) == 2,
                "the third attempt of both nacked messages",
            )
            await receiver.until_ids([m.id for m in sent])
            for message_id in nacked:
                attempts = [d.attempt for d in receiver.deliveries if d.message.id == message_id]
                assert attempts == [1, 2, 3]
            await receiver.aclose()

    async def test_nack_delay(self, transport_factory: TransportFactory) -> None:
        """``nack(delay)`` holds the message back for at least the delay."""
        topic, sent = unique("suite.delay"), messages(1)
        nacked_at: list[float] = []

        async def settle(delivery: Delivery) -> None:
            if delivery.attempt == 1:
                nacked_at.append(time.monotonic())
                await delivery.nack(0.3)
            else:
                await delivery.ack()

        async with opened(transport_factory) as transport:
            (receiver,) = await self.receive(transport, topic, unique("group"), settle=settle)
            await transport.publish(topic, sent)
            await receiver.until(lambda: len(receiver.deliveries) == 2, "the redelivery")
            waited = time.monotonic() - nacked_at[0]
            assert waited >= 0.25, f"redelivered after {waited:.3f}s, before the 0.3s delay"
            assert receiver.deliveries[1].attempt == 2
            await receiver.aclose()

    async def test_no_redelivery_after_ack(self, transport_factory: TransportFactory) -> None:
        """Acked messages never come again, not even to a reopened subscription of the group."""
        features = self.features(transport_factory)
        topic, group, sent = unique("suite.acked"), unique("group"), messages(10)
        async with opened(transport_factory) as transport:
            (receiver,) = await self.receive(transport, topic, group)
            await transport.publish(topic, sent)
            await receiver.until_ids([m.id for m in sent])
            await receiver.aclose()
            if not features.persistent:  # the group lives as long as the transport does
                (receiver,) = await self.receive(transport, topic, group)
                await self._expect_only_sentinel(transport, topic, receiver)
        if features.persistent:
            async with opened(transport_factory) as transport:
                (receiver,) = await self.receive(transport, topic, group)
                await self._expect_only_sentinel(transport, topic, receiver)

    async def _expect_only_sentinel(
        self, transport: Transport, topic: str, receiver: Receiver
    ) -> None:
        sentinel = messages(1)
        await transport.publish(topic, sentinel)
        await receiver.until_ids([sentinel[0].id], "a message published after the acked ones")
        assert receiver.ids == {sentinel[0].id}, "acked messages came again"
        await receiver.aclose()

    # -- groups -------------------------------------------------------------------------------

    async def test_groups_each_get_everything(self, transport_factory: TransportFactory) -> None:
        if not self.features(transport_factory).consumer_groups:
            pytest.skip("the transport has no consumer groups")
        topic, sent = unique("suite.groups"), messages(50)
        async with opened(transport_factory) as transport:
            (a,) = await self.receive(transport, topic, unique("group"))
            (b,) = await self.receive(transport, topic, unique("group"))
            await transport.publish(topic, sent)
            await a.until_ids([m.id for m in sent], "group a to get all")
            await b.until_ids([m.id for m in sent], "group b to get all")
            await a.aclose()
            await b.aclose()

    async def test_competing_consumers(self, transport_factory: TransportFactory) -> None:
        """Two subscriptions of one group share the work: each message reaches one of them."""
        if not self.features(transport_factory).consumer_groups:
            pytest.skip("the transport has no consumer groups")
        await self.competing_consumers(transport_factory, 200)

    async def competing_consumers(self, factory: TransportFactory, count: int) -> None:
        topic, group = unique("suite.compete"), unique("group")
        sent = messages(count, key=lambda n: f"key-{n % 16}")
        async with opened(factory) as transport, opened(factory) as other:
            (a,) = await self.receive(transport, topic, group, prefetch=10)
            (b,) = await self.receive(other, topic, group, prefetch=10)
            await transport.publish(topic, sent)
            await until([a, b], lambda: {m.id for m in sent} <= a.ids | b.ids, f"all {count}")
            assert a.ids, "both subscriptions of the group got messages"
            assert b.ids, "both subscriptions of the group got messages"
            first_attempts = [d.message.id for d in a.deliveries + b.deliveries if d.attempt == 1]
            assert len(first_attempts) == len(set(first_attempts)), "a message reached both"
            await a.aclose()
            await b.aclose()

    async def test_per_key_order(self, transport_factory: TransportFactory) -> None:
        """Over 16 keys, each key's messages are handled in publish order, even by competing
        subscriptions of one group."""
        if not self.features(transport_factory).ordered_per_key:
            pytest.skip("the transport does not order messages per key")
        await self.per_key_order(transport_factory, 16 * 20)

    async def per_key_order(self, factory: TransportFactory, count: int) -> None:
        topic, group = unique("suite.order"), unique("group")
        sent = messages(count, key=lambda n: f"key-{n % 16}")
        handled: dict[str, list[int]] = {}

        async def settle(delivery: Delivery) -> None:
            message = delivery.message
            assert message.key is not None
            handled.setdefault(message.key, []).append(int(message.headers["n"]))
            await delivery.ack()

        async with opened(factory) as transport, opened(factory) as other:
            receivers = await self.receive(transport, topic, group, settle=settle, prefetch=10)
            if self.features(factory).consumer_groups:
                receivers += await self.receive(other, topic, group, settle=settle, prefetch=10)
            for start in range(0, count, 32):
                await transport.publish(topic, sent[start : start + 32])
            await until(
                receivers, lambda: sum(len(r.ids) for r in receivers) >= count, f"{count} messages"
            )
            for key, numbers in handled.items():
                assert numbers == sorted(numbers), f"{key} handled out of order"
            for receiver in receivers:
                await receiver.aclose()

    # -- stress -------------------------------------------------------------------------------

    @pytest.mark.stress
    async def test_stress_publish_subscribe(self, transport_factory: TransportFactory) -> None:
        await self.publish_subscribe(transport_factory, 10_000)

    @pytest.mark.stress
    @pytest.mark.parametrize("round_", range(5))
    async def test_stress_parallel(self, transport_factory: TransportFactory, round_: int) -> None:
        """Several cases at once, on more messages."""
        features = self.features(transport_factory)
        cases = [
            self.publish_subscribe(transport_factory, 2_000),
            self.concurrent_publishers(transport_factory, 20, 100),
        ]
        if features.consumer_groups:
            cases.append(self.competing_consumers(transport_factory, 1_000))
        if features.ordered_per_key:
            cases.append(self.per_key_order(transport_factory, 16 * 100))
        await asyncio.gather(*cases)
