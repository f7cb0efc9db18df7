"""The NATS JetStream transport against the local nats-server (protocol level)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import nats
import nats.errors
import pytest
from brokers import delete_streams, one_per_partition
from nats.aio.msg import Msg

from tidings.dead_letters import DeadLetter
from tidings.errors import ClosedError, NotFound, ServiceUnavailable
from tidings.message import Message
from tidings.transports import from_url
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.nats import (
    NatsDelivery,
    NatsOptions,
    NatsSubscription,
    NatsTransport,
    PartitionedSubscription,
    durable_name,
    fast_path,
)

WAIT = 20.0
"""Seconds any one wait may take before the test fails."""

Factory = Callable[..., NatsTransport]
"""Makes a transport on the test's stream, optionally with another ``ack_wait``."""


@pytest.fixture
async def options(nats_url: str) -> AsyncIterator[NatsOptions]:
    """Options naming a stream and subject prefix of this test only; deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    options = NatsOptions.from_url(f"{nats_url}?stream=T{tag}&prefix=t{tag}")
    yield options
    await delete_streams(nats_url, options)


@pytest.fixture
async def transports(options: NatsOptions) -> AsyncIterator[Factory]:
    """Makes transports on this test's stream; all of them are closed afterwards."""
    made: list[NatsTransport] = []

    def make(ack_wait: float = options.ack_wait) -> NatsTransport:
        made.append(NatsTransport(replace(options, ack_wait=ack_wait)))
        return made[-1]

    yield make
    for transport in made:
        await transport.aclose()


@pytest.fixture
async def transport(transports: Factory) -> NatsTransport:
    transport = transports()
    await transport.start()
    return transport


async def take(
    subscription: PartitionedSubscription | NatsSubscription, count: int, *, ack: bool = False
) -> list[NatsDelivery]:
    """The next ``count`` deliveries, acked as they come when ``ack``."""
    got: list[NatsDelivery] = []
    async with asyncio.timeout(WAIT):
        async for batch in subscription:
            got.extend(batch)
            if ack:
                for delivery in batch:
                    await delivery.ack()
            if len(got) >= count:
                break
    assert len(got) == count, f"expected {count} deliveries, got {len(got)}"
    return got


async def take_acked(subscription: PartitionedSubscription, count: int) -> list[Message]:
    return [d.message for d in await take(subscription, count, ack=True)]


def messages(count: int) -> list[Message]:
    return [Message("test.item", b"payload %d" % n, {"n": str(n)}) for n in range(count)]


async def test_round_trip_keeps_the_envelope(transport: NatsTransport) -> None:
    sent = Message("user.signed_up", b'{"name":"J\xc3\xa9"}', {"tenant": "a", "x-y": ""}, "user-1")
    await transport.publish("users.signed_up", [sent])
    (got,) = await take_acked(transport.subscribe("users.signed_up", group="g"), 1)
    assert got == sent  # id, type, data, headers and key
    assert got.timestamp == sent.timestamp


async def test_a_batch_arrives_in_publish_order(transport: NatsTransport) -> None:
    sent = messages(500)
    await transport.publish("items", sent[:200])
    await transport.publish("items", sent[200:])
    got = await take_acked(transport.subscribe("items", group="g", prefetch=64), 500)
    assert [m.id for m in got] == [m.id for m in sent]


async def test_every_group_gets_every_message(transport: NatsTransport) -> None:
    sent = messages(20)
    await transport.publish("items", sent)
    for group in ("billing", "audit"):
        got = await take_acked(transport.subscribe("items", group=group), 20)
        assert [m.id for m in got] == [m.id for m in sent]


async def test_subscriptions_of_one_group_split_the_messages(transport: NatsTransport) -> None:
    sent = messages(30)
    await transport.publish("items", sent)
    first = transport.subscribe("items", group="workers", prefetch=10)
    held = await take(first, 10)  # unsettled, so the group's other subscription gets the rest
    rest = await take_acked(transport.subscribe("items", group="workers"), 20)
    ids = [d.message.id for d in held] + [m.id for m in rest]
    assert sorted(ids) == sorted(m.id for m in sent)


async def test_nack_redelivers_after_the_delay_with_the_next_attempt(
    transport: NatsTransport,
) -> None:
    await transport.publish("items", messages(1))
    subscription = transport.subscribe("items", group="g")
    (first,) = await take(subscription, 1)
    assert first.attempt == 1
    nacked_at = time.monotonic()
    await first.nack(delay=1.0)
    (again,) = await take(subscription, 1)
    assert time.monotonic() - nacked_at >= 0.9  # the server held it back
    assert again.message.id == first.message.id
    assert again.attempt == 2
    await again.ack()


async def test_acked_messages_do_not_come_again(transports: Factory) -> None:
    async with asyncio.timeout(WAIT):
        transport = transports()
        await transport.publish("items", messages(5))
        subscription = transport.subscribe("items", group="g")
        await take_acked(subscription, 5)
        await transport.aclose()

        reopened = transports()
        sentinel = Message("test.sentinel", b"")
        await reopened.publish("items", [sentinel])
        (got,) = await take_acked(reopened.subscribe("items", group="g"), 1)
        assert got.id == sentinel.id


async def test_unsettled_messages_of_a_closed_subscription_come_again(
    transports: Factory,
) -> None:
    transport = transports(ack_wait=1)
    sent = messages(8)
    await transport.publish("items", sent)
    subscription = transport.subscribe("items", group="g", prefetch=4)
    handed_out = await take(subscription, 4)
    await subscription.aclose()
    await transport.aclose()  # as if the worker died holding four deliveries

    again = await take(transports(ack_wait=1).subscribe("items", group="g"), 8, ack=True)
    assert sorted(d.message.id for d in again) == sorted(m.id for m in sent)
    attempts = {d.message.id: d.attempt for d in again}
    assert all(attempts[d.message.id] == 2 for d in handed_out)


async def _first_delivery(batches: AsyncIterator[list[NatsDelivery]]) -> list[NatsDelivery]:
    """The first batch that holds a delivery: an empty one only says the subscription attached."""
    while True:
        if batch := await anext(batches):
            return batch


async def test_a_delivery_held_past_ack_wait_stays_with_its_live_subscription(
    transports: Factory,
) -> None:
    holder = transports(ack_wait=1)
    await holder.publish("items", messages(1))
    (held,) = await take(holder.subscribe("items", group="g"), 1)  # a slow handler has it
    other = transports(ack_wait=1).subscribe("items", group="g")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(3.5):  # past ack_wait three times over: nothing comes
            await _first_delivery(other)
    await holder.aclose()  # the holder is gone: now its delivery comes again
    (again,) = await take(other, 1)
    assert again.message.id == held.message.id


async def test_wildcards_follow_nats(transport: NatsTransport) -> None:
    for topic in ("orders.created", "orders.eu.created", "invoices.created"):
        await transport.publish(topic, [Message(topic, b"")])
    one = await take_acked(transport.subscribe("orders.*", group="one"), 1)
    many = await take_acked(transport.subscribe("orders.>", group="many"), 2)
    assert [m.type for m in one] == ["orders.created"]
    assert [m.type for m in many] == ["orders.created", "orders.eu.created"]


async def test_publishing_a_message_id_again_stores_it_once(transport: NatsTransport) -> None:
    (message,) = messages(1)
    await transport.publish("items", [message])
    await transport.publish("items", [message])
    sentinel = Message("test.sentinel", b"")
    await transport.publish("items", [sentinel])
    got = await take_acked(transport.subscribe("items", group="g"), 2)
    assert [m.id for m in got] == [message.id, sentinel.id]


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("items.*", Message("t", b"")),
        ("items", Message("t", b"", key="a\r\nb")),
        ("items", Message("t", b"", {"bad name": "v"})),
        ("items", Message("t\n", b"")),
        ("it ems", Message("t", b"")),
        ("items", Message("t", b"x" * (1024 * 1024 - 50))),  # the server's limit, with headers
    ],
)
async def test_what_cannot_travel_is_refused_before_sending(
    transport: NatsTransport, topic: str, message: Message
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # the message text varies with the case
        await transport.publish(topic, [message])


def letter(topic: str, n: int) -> DeadLetter:
    return DeadLetter(
        id=str(uuid.uuid4()),
        message_id=str(uuid.uuid4()),
        topic=topic,
        type="test.item",
        group="g",
        data=b"payload %d" % n,
        headers={"n": str(n)},
        key=None,
        error_type="builtins.ValueError",
        error_message="bad",
        traceback="Traceback ...",
        attempts=3,
        failed_at=1000.0 + n,
        published_at=999.0,
    )


async def test_dead_letter_store(transport: NatsTransport) -> None:
    store = transport.dead_letters()
    topics = ("orders.created", "orders.paid", "orders.created", "orders.*")  # a pattern too
    letters = [letter(topic, n) for n, topic in enumerate(topics)]
    for item in letters:
        await store.add(item)
    await store.add(letters[0])  # the same letter again is kept once

    assert await store.list() == letters
    assert await store.list(topic="orders.created") == [letters[0], letters[2]]
    assert await store.list(limit=1) == letters[:1]
    assert await store.get(letters[1].id) == letters[1]
    assert await store.remove([letters[1].id, "no-such-letter"]) == 1
    assert await store.list() == [letters[0], letters[2], letters[3]]
    assert await store.list(topic="orders.*") == [letters[3]]
    for missing in (letters[1].id, "a.b", ">"):
        with pytest.raises(NotFound):
            await store.get(missing)


async def test_dead_letters_survive_the_transport(transports: Factory) -> None:
    item = letter("orders.created", 0)
    await transports().dead_letters().add(item)
    assert await transports().dead_letters().list() == [item]


async def test_close_is_idempotent(transport: NatsTransport) -> None:
    subscription = transport.subscribe("items", group="g")
    await transport.publish("items", messages(1))
    await take_acked(subscription, 1)
    await subscription.aclose()
    await subscription.aclose()
    await transport.aclose()
    await transport.aclose()
    with pytest.raises(ClosedError):
        await transport.publish("items", messages(1))


async def test_an_unreachable_server_is_reported_without_credentials() -> None:
    transport = NatsTransport("nats://app:s3cret@127.0.0.1:1?connect_timeout=0.5")
    with pytest.raises(ServiceUnavailable, match="NATS is not reachable") as raised:
        await transport.start()
    assert "s3cret" not in str(raised.value)
    assert "app:***@127.0.0.1:1" in str(raised.value)
    await transport.aclose()


def test_options_come_from_the_url() -> None:
    transport = from_url("nats://u:p@a:4222,b:4223?stream=ORDERS&prefix=orders&ack_wait=60&tls=1")
    assert isinstance(transport, NatsTransport)
    options = transport.options
    assert options.servers == ("nats://u:p@a:4222", "nats://u:p@b:4223")
    assert (options.stream, options.prefix, options.ack_wait, options.tls) == (
        "ORDERS",
        "orders",
        60.0,
        True,
    )
    assert options.dead_letter_stream == "ORDERS_DLQ"
    with pytest.raises(ValueError, match="unknown nats option 'colour'"):
        NatsOptions.from_url("nats://127.0.0.1:4222?colour=red")
    with pytest.raises(ValueError, match="storage"):
        NatsOptions.from_url("nats://127.0.0.1:4222?storage=disk")


def test_consumer_names_are_valid_and_distinct() -> None:
    names = {durable_name(g, t) for g in ("a", "a.b", "a_b") for t in ("x.*", "x.>", "x_star")}
    assert len(names) == 9
    assert not any(c in name for name in names for c in ".*> ")


class FakeConnection:
    """Just enough of nats-py's client for one subscription: a pull request is answered with
    the messages queued in ``stored``; publishes to reply subjects are recorded, or fail with the
    errors queued in ``failures``."""

    def __init__(self, stored: int) -> None:
        self.stored = [
            Msg(self, "t.items", f"$JS.ACK.S.g.1.{n}.{n}.1700000000000000000.0", b"%d" % n, {})  # type: ignore[arg-type]
            for n in range(1, stored + 1)
        ]
        self.acks: list[tuple[str, bytes]] = []
        self.failures: list[Exception] = []
        self.is_closed = False
        self._deliver: Callable[[Msg], Awaitable[None]] | None = None

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> object:
        self._deliver = cb
        return self

    async def unsubscribe(self) -> None:
        pass

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
        if subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
            assert self._deliver is not None
            stored, self.stored = self.stored, []
            for msg in stored:
                await self._deliver(msg)
            return
        if self.failures:
            raise self.failures.pop(0)
        self.acks.append((subject, payload))


async def test_settling_survives_errors_writing_acks(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write of acks is logged (the deliveries come again) and later acks still go;
    a full outgoing buffer (a reconnect in progress) is tried again."""
    monkeypatch.setattr(fast_path, "reply_all", fast_path.public_reply_all)  # the fake's publish
    connection = FakeConnection(stored=3)

    async def attach(again: bool) -> tuple[Any, str]:
        return connection, "$JS.API.CONSUMER.MSG.NEXT.S.g"

    errors = ErrorMap("NATS", "nowhere", unreachable=())
    subscription = NatsSubscription(
        "items", "g", prefetch=8, attach=attach, errors=errors, topic_start=2, expires=5.0,
        ack_wait=30.0,
    )  # fmt: skip
    first, second, third = await take(subscription, 3)
    connection.failures.append(RuntimeError("the write failed"))
    await first.ack()
    await asyncio.sleep(0.01)
    assert "could not settle 1 deliveries" in caplog.text
    connection.failures.append(nats.errors.OutboundBufferLimitError())
    await second.ack()
    await third.nack(delay=1.5)
    async with asyncio.timeout(WAIT):
        await subscription.shutdown()
    assert [payload for _, payload in connection.acks] == [b"+ACK", b'-NAK {"delay":1500000000}']
    assert caplog.text.count("could not settle") == 1


async def test_a_closed_subscription_hands_its_partitions_on(
    transports: Factory, options: NatsOptions
) -> None:
    """Closing a subscription (its transport staying open) ends its leases: another member of
    the group takes every partition, not only its share beside a member that left."""
    first, second = transports(ack_wait=1.0), transports(ack_wait=1.0)
    await first.start()
    await second.start()
    closing = first.subscribe("items", group="g")
    await first.publish("items", one_per_partition(options.partitions))
    await take(closing, options.partitions, ack=True)  # it took every partition
    await closing.aclose()
    staying = second.subscribe("items", group="g")
    await second.publish("items", one_per_partition(options.partitions))
    await take(staying, options.partitions, ack=True)


async def test_a_closed_subscription_gives_back_what_it_never_handed_out(
    transports: Factory, options: NatsOptions
) -> None:
    """Messages its partitions received and the iteration never took are given back when the
    subscription closes: they do not hold its partitions, and the next member handles them."""
    first, second = transports(ack_wait=1.0), transports(ack_wait=1.0)
    await first.start()
    await second.start()
    closing = first.subscribe("items", group="g")
    await first.publish("items", one_per_partition(options.partitions))
    await take(closing, options.partitions, ack=True)
    untaken = one_per_partition(options.partitions)
    await first.publish("items", untaken)  # fetched by its partitions, never taken
    await closing.aclose()
    staying = second.subscribe("items", group="g")
    wanted, got = {m.id for m in untaken}, set[str]()
    async with asyncio.timeout(WAIT):  # at least once: acks not yet sent may come again too
        async for batch in staying:
            for delivery in batch:
                got.add(delivery.message.id)
                await delivery.ack()
            if wanted <= got:
                break
