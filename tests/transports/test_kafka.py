"""The Kafka transport's own behaviour, beyond the conformance suite: partitioning by key,
commits that follow settlement, redelivery by publishing again, dead letters as records."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from hypothesis import given
from hypothesis import strategies as st
from kafka_conftest import kafka_url, tansu  # noqa: F401  # fixtures

from tidings.bus import Bus
from tidings.dead_letters import REPLAY_GROUP_HEADER, DeadLetter, dead_letter_from
from tidings.errors import ClosedError, ServiceUnavailable
from tidings.message import Message
from tidings.testing.tansu import Tansu
from tidings.transports import from_url
from tidings.transports.kafka import KafkaDelivery, KafkaOptions, KafkaSubscription, KafkaTransport
from tidings.transports.kafka.topics import topic_regex
from tidings.transports.kafka.wire import from_record, record_headers
from tidings.transports.kit.wire import ATTEMPT, from_wire

TIMEOUT = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def messages(count: int, key: str | None = None) -> list[Message]:
    return [Message("test.item", f"payload {n}".encode(), {"n": str(n)}, key) for n in range(count)]


@pytest.fixture
async def kafka(kafka_url: str) -> AsyncIterator[KafkaTransport]:  # noqa: F811
    transport = KafkaTransport(kafka_url)
    await transport.start()
    yield transport
    await transport.aclose()


async def take(subscription: KafkaSubscription, count: int) -> list[KafkaDelivery]:
    """The next ``count`` deliveries, unsettled."""
    taken: list[KafkaDelivery] = []
    async with asyncio.timeout(TIMEOUT):
        while len(taken) < count:
            taken.extend(await anext(subscription))
    return taken


async def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of ``topic`` as (partition, key, value), read without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        records = []
        async with asyncio.timeout(TIMEOUT):
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    records += [(r.partition, r.key, r.value) for r in batch]
        return records
    finally:
        await consumer.stop()


# -- without a broker -------------------------------------------------------------------------


def test_options_from_url() -> None:
    options = KafkaOptions.from_url(
        "kafka://app:s%40cret@k1:9093,k2?tls=true&partitions=6&commit_interval=0.5"
    )
    assert options.bootstrap == ("k1:9093", "k2:9092")
    assert (options.username, options.password) == ("app", "s@cret")
    assert (options.tls, options.partitions, options.commit_interval) == (True, 6, 0.5)
    assert "s@cret" not in repr(options)
    settings = options.client_settings()
    assert settings["security_protocol"] == "SASL_SSL"
    with pytest.raises(ValueError, match="unknown kafka option 'nope'"):
        KafkaOptions.from_url("kafka://127.0.0.1:9092?nope=1")


def test_wildcards_become_anchored_regexes() -> None:
    star = re.compile(topic_regex("user.*", exclude="tidings.dead-letters"))
    assert star.match("user.signed_up")
    assert not star.match("user.a.b")
    assert not star.match("users.x")
    tail = re.compile(topic_regex("user.>", exclude="tidings.dead-letters"))
    assert tail.match("user.a")
    assert tail.match("user.a.b")
    assert not tail.match("user")
    everything = re.compile(topic_regex(">", exclude="tidings.dead-letters"))
    assert everything.match("orders.placed")
    assert not everything.match("tidings.dead-letters"), "dead letters are never a wildcard's"
    with pytest.raises(ValueError, match="cannot be part of a Kafka topic name"):
        topic_regex("user.a$b.*", exclude="tidings.dead-letters")


def test_record_headers_carry_the_envelope() -> None:
    message = Message("user.signed_up", b"{}", {"tenant": "a"}, "user-1")
    again, attempt = from_wire("topic", message.data, dict(record_headers(message)))
    assert again == message
    assert again.timestamp == message.timestamp
    assert attempt == 1
    forged = message.with_headers({"tidings-id": "forged", ATTEMPT: "3"})
    again, attempt = from_wire("topic", b"{}", dict(record_headers(forged)))
    assert (again.id, again.headers, attempt) == (message.id, {"tenant": "a"}, 3)


_header_values = st.one_of(
    st.none(), st.binary(max_size=12), st.sampled_from([b"1.5", b"x\x00", b"\xff", b"7"])
)
_header_names = st.sampled_from(
    ["tidings-id", "tidings-type", "tidings-time", "tidings-key", ATTEMPT, "ce-id", "a", "b"]
)


@given(
    first=st.lists(st.tuples(_header_names, _header_values), max_size=3),
    envelope=st.booleans(),
    rest=st.lists(st.tuples(_header_names, _header_values), max_size=4),
    value=st.one_of(st.none(), st.binary(max_size=8)),
)
def test_records_are_read_as_from_wire_reads_them(
    first: list[tuple[str, bytes | None]],
    envelope: bool,
    rest: list[tuple[str, bytes | None]],
    value: bytes | None,
) -> None:
    if envelope:  # what record_headers writes, then anything
        first = [("tidings-id", b"an-id"), ("tidings-type", b"a.type"), ("tidings-time", b"2.5")]
    headers: list[tuple[str, Any]] = [*first, *rest]
    fast, fast_attempt = from_record("topic", value, headers)
    slow, slow_attempt = from_wire("topic", value, dict(headers))
    assert (fast.type, fast.data, dict(fast.headers), fast.key, fast_attempt) == (
        slow.type,
        slow.data,
        dict(slow.headers),
        slow.key,
        slow_attempt,
    )
    assert (fast._id, fast._time) == (slow._id, slow._time)  # given ones, or both made fresh


def test_records_of_other_producers_are_delivered() -> None:
    message, attempt = from_wire("orders", None, {"source": b"erp", "empty": None})
    assert (message.type, message.data, dict(message.headers), attempt) == (
        "orders",
        b"",
        {"source": "erp"},
        1,
    )


async def test_unreachable_broker_names_kafka_without_credentials() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = from_url(f"kafka://app:hunter2@127.0.0.1:{port}?allow_plaintext_password=true")
    with pytest.raises(ServiceUnavailable) as raised:
        await transport.start()
    assert f"Kafka is not reachable at 127.0.0.1:{port}" in str(raised.value)
    assert "hunter2" not in str(raised.value)
    await transport.aclose()


async def test_illegal_topic_names_are_refused_at_once(kafka: KafkaTransport) -> None:
    with pytest.raises(ValueError, match="not a legal Kafka topic name"):
        await kafka.publish("orders/placed", messages(1))
    with pytest.raises(ValueError, match="not a legal Kafka topic name"):
        kafka.subscribe("orders/placed", group="g")


# -- on the broker ----------------------------------------------------------------------------


async def test_keys_choose_partitions_as_kafka_does(kafka: KafkaTransport, tansu: Tansu) -> None:  # noqa: F811
    """Record key = message key, partition = murmur2(key) as in the Java client, so tidings and
    other producers agree; one key's records are in publish order."""
    topic = unique("kafka.keys")
    sent = [m for n in range(8) for m in messages(5, key=f"user-{n}")]
    await kafka.publish(topic, sent)
    records = await read_topic(tansu.bootstrap, topic)
    assert len(records) == len(sent)
    count = len(await (await kafka.producer()).partitions_for(topic))
    for partition, key, _ in records:
        assert key is not None
        assert partition == (murmur2(key) & 0x7FFFFFFF) % count
    for n in range(8):
        key = f"user-{n}".encode()
        values = [v for _, k, v in records if k == key]
        assert values == [f"payload {i}".encode() for i in range(5)]


async def test_commits_stop_at_the_oldest_unsettled(kafka: KafkaTransport, kafka_url: str) -> None:  # noqa: F811
    """Acks arriving out of order commit nothing past a delivery still in progress: after a
    restart of the group the unsettled one and everything after it come again."""
    topic, group = unique("kafka.commits"), unique("group")
    sent = messages(3, key="one-partition")
    await kafka.publish(topic, sent)
    first = kafka.subscribe(topic, group=group)
    deliveries = await take(first, 3)
    assert [d.message.id for d in deliveries] == [m.id for m in sent]
    await deliveries[1].ack()
    await deliveries[2].ack()
    await first.aclose()
    await first.wait_closed()

    again = kafka.subscribe(topic, group=group)
    redelivered = await take(again, 3)
    assert [d.message.id for d in redelivered] == [m.id for m in sent]
    for delivery in redelivered:
        await delivery.ack()
    await again.aclose()
    await again.wait_closed()

    last = kafka.subscribe(topic, group=group)
    sentinel = messages(1)
    await kafka.publish(topic, sentinel)
    (delivery,) = await take(last, 1)
    assert delivery.message.id == sentinel[0].id, "acked messages came again"
    await last.aclose()


async def test_nack_publishes_again_after_the_delay(kafka: KafkaTransport) -> None:
    """The copy has the next attempt number and is addressed to the failing group; until it is
    published the original stays uncommitted."""
    topic, group = unique("kafka.nack"), unique("group")
    (original,) = sent = messages(1)
    await kafka.publish(topic, sent)
    subscription = kafka.subscribe(topic, group=group)
    (delivery,) = await take(subscription, 1)
    nacked_at = time.monotonic()
    await delivery.nack(0.2)
    (retry,) = await take(subscription, 1)
    assert time.monotonic() - nacked_at >= 0.2
    assert retry.message == original.with_headers({REPLAY_GROUP_HEADER: group})
    assert retry.attempt == 2
    await retry.ack()
    await subscription.aclose()


async def test_nacked_message_survives_a_close_during_its_delay(kafka: KafkaTransport) -> None:
    topic, group = unique("kafka.nack-close"), unique("group")
    sent = messages(1)
    await kafka.publish(topic, sent)
    first = kafka.subscribe(topic, group=group)
    (delivery,) = await take(first, 1)
    await delivery.nack(60.0)
    await first.aclose()
    await first.wait_closed()

    again = kafka.subscribe(topic, group=group)
    (redelivered,) = await take(again, 1)
    assert (redelivered.message.id, redelivered.attempt) == (sent[0].id, 1)
    await redelivered.ack()
    sentinel = messages(1)
    await kafka.publish(topic, sentinel)
    (last,) = await take(again, 1)
    assert last.message.id == sentinel[0].id, "the nacked message was published again"
    await again.aclose()


async def test_prefetch_bounds_unsettled_deliveries(kafka: KafkaTransport) -> None:
    topic = unique("kafka.prefetch")
    await kafka.publish(topic, messages(20, key="k"))
    subscription = kafka.subscribe(topic, group=unique("group"), prefetch=3)
    unsettled: list[KafkaDelivery] = []
    received = 0
    async with asyncio.timeout(TIMEOUT):
        while received < 20:
            if len(unsettled) == 3:
                await unsettled.pop(0).ack()
            batch: Sequence[KafkaDelivery] = await anext(subscription)
            received += len(batch)
            unsettled.extend(batch)
            assert len(unsettled) <= 3
    await subscription.aclose()


async def test_committing_survives_an_unexpected_error(
    kafka: KafkaTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An error of any kind in a commit (injected into aiokafka) is logged once and the offsets
    are committed when it works again, while the member lives."""
    topic, group = unique("kafka.commit-fails"), unique("group")
    await kafka.publish(topic, messages(3, key="k"))
    commit, failures, committed = AIOKafkaConsumer.commit, 3, asyncio.Event()

    async def flaky(self: AIOKafkaConsumer, offsets: object = None) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("injected")
        await commit(self, offsets)
        committed.set()

    monkeypatch.setattr(AIOKafkaConsumer, "commit", flaky)
    first = kafka.subscribe(topic, group=group)
    for delivery in await take(first, 3):
        await delivery.ack()
    async with asyncio.timeout(TIMEOUT):
        await committed.wait()
    said = [r.getMessage() for r in caplog.records if "committing offsets" in r.getMessage()]
    assert len(said) == 2, said  # the trouble begins, the trouble is over
    assert "RuntimeError('injected')" in said[0]
    await first.aclose()
    await first.wait_closed()
    again = kafka.subscribe(topic, group=group)
    sentinel = messages(1)
    await kafka.publish(topic, sentinel)
    (delivery,) = await take(again, 1)
    assert delivery.message.id == sentinel[0].id, "committed messages came again"
    await again.aclose()


async def test_publishing_a_nacked_message_survives_an_unexpected_error(
    kafka: KafkaTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    topic, group = unique("kafka.nack-fails"), unique("group")
    (original,) = sent = messages(1)
    await kafka.publish(topic, sent)
    subscription = kafka.subscribe(topic, group=group)
    (delivery,) = await take(subscription, 1)
    send_batch, failures = AIOKafkaProducer.send_batch, 2

    async def flaky(self: AIOKafkaProducer, *args: object, **kwargs: object) -> object:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("injected")
        return await send_batch(self, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaProducer, "send_batch", flaky)
    await delivery.nack()
    (retry,) = await take(subscription, 1)
    assert (retry.message.id, retry.attempt, failures) == (original.id, 2, 0)
    said = [r.getMessage() for r in caplog.records if "again" in r.getMessage()]
    assert len(said) == 1, said
    await retry.ack()
    await subscription.aclose()


async def test_a_closed_bus_commits_what_it_handled(kafka_url: str) -> None:  # noqa: F811
    """Closing a Bus finishes the handlers in progress and commits them: a bus of the same group
    started later gets only what is new."""
    topic, group = unique("kafka.bus"), unique("group")
    handled: list[str] = []
    arrived = asyncio.Event()

    async def handle(message: Message) -> None:
        handled.append(message.id)
        arrived.set()

    async def until(count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while len(handled) < count:
                arrived.clear()
                await arrived.wait()

    first = Bus(kafka_url)
    first.subscribe(topic, handle, group=group, concurrency=4)
    async with first:
        for n in range(20):
            await first.publish(Message("test.item", b'{"n":%d}' % n, key="k"), topic=topic)
        await until(20)
    handled.clear()
    second = Bus(kafka_url)
    second.subscribe(topic, handle, group=group, concurrency=4)
    async with second:
        sentinel = await second.publish(Message("test.item", b"{}"), topic=topic)
        await until(1)
    assert handled == [sentinel.id], "handled messages came again"


async def test_dead_letters_are_records_with_tombstones(kafka_url: str, tansu: Tansu) -> None:  # noqa: F811
    topic = unique("kafka.letters")
    transport = KafkaTransport(f"{kafka_url}&dead_letter_topic={topic}")
    store = transport.dead_letters()
    message = Message("test.item", b"{}", {"n": "1"}, "k")
    letter = dead_letter_from(
        message,
        topic="orders",
        group="billing",
        data=b"{}",
        error=ValueError("boom"),
        attempts=3,
        failed_at=time.time(),
    )
    await store.add(letter)
    ((_, key, value),) = await read_topic(tansu.bootstrap, topic)
    assert key == letter.id.encode()
    assert value is not None
    assert msgspec.json.decode(value, type=DeadLetter) == letter
    assert await store.remove([letter.id]) == 1
    assert [v for _, _, v in await read_topic(tansu.bootstrap, topic)] == [value, None]
    assert await store.list() == []
    await transport.aclose()


async def test_partitions_option_creates_topics(kafka_url: str) -> None:  # noqa: F811
    transport = KafkaTransport(f"{kafka_url}&partitions=2")
    topic = unique("kafka.created")
    await transport.publish(topic, messages(1))
    producer = await transport.producer()
    assert await producer.partitions_for(topic) == {0, 1}
    await transport.aclose()


async def test_close_is_idempotent(kafka_url: str) -> None:  # noqa: F811
    transport = KafkaTransport(kafka_url)
    await transport.start()
    subscription = transport.subscribe(unique("kafka.close"), group="g")
    await asyncio.gather(transport.aclose(), transport.aclose())
    await transport.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(subscription)
    with pytest.raises(ClosedError):
        await transport.publish("kafka.close", messages(1))
    with pytest.raises(ClosedError):
        transport.subscribe("kafka.close", group="g")
