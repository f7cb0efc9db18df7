"""The Redis Streams transport against the local redis-server: what the conformance suite does not
reach (crash recovery by lease, lease extension, long nack delays, topic discovery, streams
written by other producers, trimming, options, errors)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis.asyncio as redis
from brokers import REDIS, Numbers, delete_prefix, one_per_partition, shell, wait_ready
from redis.exceptions import RedisError

from tidings.bus import Bus
from tidings.errors import ClosedError, ServiceUnavailable
from tidings.message import Malformed, Message
from tidings.testing.receiver import Receiver, opened, waiting
from tidings.transports import from_url
from tidings.transports.base import Delivery
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.partitions import partition_of
from tidings.transports.redis import RedisOptions, RedisTransport
from tidings.transports.redis.settlement import Settlement
from tidings.transports.redis.transport import LOST, connect
from tidings.transports.redis.wire import Keys

TIMEOUT = 30.0


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def _port_open() -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", 6379)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def restart_redis(url: str) -> None:
    """Stop the local redis-server without saving, wait until it is gone, start it again and
    wait until it answers. Only the machine's own server (the default URL) is restarted."""
    await stop_redis(url)
    await start_redis()


async def stop_redis(url: str) -> None:
    """Stop the local redis-server without saving and wait until it is gone (see
    :func:`restart_redis`); :func:`start_redis` starts it again."""
    if url != REDIS.default:
        pytest.skip("only the machine's own Redis is ours to restart")
    await shell("redis-cli -h 127.0.0.1 -p 6379 shutdown nosave")
    async with waiting(TIMEOUT, "redis-server to stop"):
        while True:
            if not await _port_open():
                break
            await asyncio.sleep(0.05)  # polling the port: nothing else tells


async def start_redis() -> None:
    """Start the local redis-server and wait until it answers."""
    await shell(REDIS.start)
    await wait_ready(REDIS)


@pytest.fixture
async def url(redis_url: str) -> AsyncIterator[str]:
    """The Redis URL with a fresh key prefix and a one-second lease; the keys go afterwards."""
    prefix = unique_prefix()
    yield f"{redis_url}?prefix={prefix}&lease=1"
    await delete_prefix(redis_url, prefix)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _messages(count: int) -> list[Message]:
    return [Message("test.item", f"payload {n}".encode(), {"n": str(n)}) for n in range(count)]


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    async with waiting(TIMEOUT, what):
        while True:
            if await condition():
                break
            await asyncio.sleep(0.05)  # polling Redis: nothing else tells


async def test_round_trip_keeps_the_envelope(url: str) -> None:
    sent = Message("user.signed_up", b"\x00\xffbinary", {"tenant": "a", "empty": ""}, "user-1")
    async with opened(lambda: RedisTransport(url)) as transport:
        receiver = Receiver(transport.subscribe("users", group="g"), timeout=TIMEOUT)
        await transport.publish("users", [sent])
        await receiver.until_ids([sent.id])
        (delivery,) = receiver.deliveries
        assert delivery.message == sent
        assert delivery.message.timestamp == sent.timestamp
        assert delivery.attempt == 1
        await receiver.aclose()


async def test_entries_of_other_producers_are_delivered(url: str, raw: redis.Redis) -> None:
    """A stream entry written without tidings' fields arrives with the topic as its type and
    its other fields as headers; one whose headers field is not JSON arrives Malformed."""
    options = RedisOptions.from_url(url)
    async with opened(lambda: RedisTransport(options)) as transport:
        receiver = Receiver(transport.subscribe("legacy.orders", group="g"), timeout=TIMEOUT)
        stream = f"{options.prefix}:topic:legacy.orders"
        await raw.xadd(stream, {"data": b'{"order": 1}', "source": "cron"})
        await raw.xadd(stream, {"headers": b"not json", "data": b"x"})
        await receiver.until(lambda: len(receiver.deliveries) == 2, "both entries")
        first, second = receiver.messages
        assert (first.type, first.data, dict(first.headers)) == (
            "legacy.orders",
            b'{"order": 1}',
            {"source": "cron"},
        )
        assert isinstance(second.data, Malformed), "unreadable headers: dead-lettered raw"
        assert (second.type, second.data.raw) == ("legacy.orders", b"x")
        await receiver.aclose()


async def test_dead_consumer_messages_come_again(url: str, raw: redis.Redis) -> None:
    """Entries a consumer took and never settled (it died) are claimed after the lease, with
    the attempt counted."""
    options = RedisOptions.from_url(url)
    sent = _messages(3)
    async with opened(lambda: RedisTransport(options)) as transport:
        await transport.publish("jobs", sent)
        stream = f"{options.prefix}:topic:jobs"
        await raw.xgroup_create(stream, "workers", id="0")
        taken: Any = await raw.xreadgroup("workers", "dead-worker", {stream: ">"}, count=10)
        assert sum(len(entries) for _, entries in taken) == 3
        receiver = Receiver(transport.subscribe("jobs", group="workers"), timeout=TIMEOUT)
        await receiver.until_ids([m.id for m in sent], "the dead consumer's messages")
        assert [d.attempt for d in receiver.deliveries] == [2, 2, 2]
        await receiver.aclose()


async def test_unsettled_deliveries_keep_their_lease(url: str, raw: redis.Redis) -> None:
    """A live subscription extends the lease of what it holds: a competing subscription does
    not take it, however long the handler runs."""
    options = replace(RedisOptions.from_url(url), lease=2.0)  # room for a slow machine
    stream = f"{options.prefix}:topic:slow"
    held: list[Delivery] = []

    async def hold(delivery: Delivery) -> None:
        held.append(delivery)

    async with opened(lambda: RedisTransport(options)) as first:
        holder = Receiver(first.subscribe("slow", group="g"), hold, TIMEOUT)
        await first.publish("slow", _messages(1))
        await holder.until(lambda: len(held) == 1, "the delivery")
        delivered = time.monotonic()
        async with opened(lambda: RedisTransport(options)) as second:
            rival = Receiver(second.subscribe("slow", group="g"), timeout=TIMEOUT)

            async def past_the_lease() -> bool:
                return time.monotonic() - delivered > 1.5 * options.lease

            await _until(past_the_lease, "the holder to keep the delivery past its lease")
            pending: Any = await raw.xpending_range(stream, "g", "-", "+", 1)
            assert pending[0]["times_delivered"] == 1
            assert rival.deliveries == []
            await held[0].ack()
            await rival.aclose()
        await holder.aclose()


async def test_lease_keeper_and_ack_flusher_survive_an_injected_failure(
    url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error in a background task (here from the client it is given) is logged;
    the lease keeper goes on extending leases and later acks are still sent."""
    options = RedisOptions.from_url(url)  # a one-second lease
    stream = f"{options.prefix}:topic:hardy"
    await raw.xgroup_create(stream, "g", id="0", mkstream=True)
    for n in range(2):
        await raw.xadd(stream, {"data": str(n)})
    taken: Any = await raw.xreadgroup("g", "c", {stream: ">"}, count=10)
    first, second = (entry for _, entries in taken for entry, _ in entries)
    client, broken = connect(options), [True]

    async def connected() -> redis.Redis:
        if broken[0]:
            raise RuntimeError("injected")
        return client

    async def nacked(due: list[float]) -> None:
        pass

    errors = ErrorMap("Redis", options.address, LOST, (RedisError,))
    settlement = Settlement(
        connected=connected, errors=errors, group="g", consumer="c", lease=1.0, nacked=nacked
    )
    try:
        settlement.hold([(stream.encode(), first), (stream.encode(), second)])
        await asyncio.sleep(0.5)  # the keeper's first round fails
        broken[0] = False
        await asyncio.sleep(1.0)  # past the lease: kept only if the keeper came back
        pending: Any = await raw.xpending_range(stream, "g", "-", "+", 10)
        assert all(p["time_since_delivered"] < 1000 for p in pending), pending
        broken[0] = True
        settlement.settle(stream.encode(), first, None)
        await asyncio.sleep(0.05)  # that ack is given up, logged
        broken[0] = False
        settlement.settle(stream.encode(), second, None)
        await settlement.finish()
        pending = await raw.xpending_range(stream, "g", "-", "+", 10)
        assert [p["message_id"] for p in pending] == [first], "the second ack went through"
    finally:
        await client.aclose()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lease keeper" in m and "failed" in m for m in messages) == 1, messages
    assert any("could not settle 1 deliveries" in m for m in messages), messages


async def test_nack_longer_than_the_lease(url: str) -> None:
    """A nack delay beyond the lease is kept: the message comes again after it, not after the
    lease."""
    nacked_at: list[float] = []

    async def settle(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            nacked_at.append(time.monotonic())
            await delivery.nack(2.5)
        else:
            await delivery.ack()

    async with opened(lambda: RedisTransport(url)) as transport:
        receiver = Receiver(transport.subscribe("later", group="g"), settle, TIMEOUT)
        await transport.publish("later", _messages(1))
        await receiver.until(lambda: len(receiver.deliveries) == 2, "the redelivery")
        assert time.monotonic() - nacked_at[0] >= 2.4
        assert receiver.deliveries[1].attempt == 2
        await receiver.aclose()


async def test_pattern_finds_topics_created_later(url: str) -> None:
    """A pattern subscription picks up topics first published after it subscribed, from their
    first message on."""
    async with opened(lambda: RedisTransport(f"{url}&discovery=0.1")) as transport:
        receiver = Receiver(transport.subscribe("shop.*.created", group="g"), timeout=TIMEOUT)
        early, late, other = _messages(2), _messages(3), _messages(1)
        await transport.publish("shop.order.created", early)
        await receiver.until_ids([m.id for m in early])
        await transport.publish("shop.invoice.created", late)
        await transport.publish("shop.invoice.deleted", other)
        await receiver.until_ids([m.id for m in late], "the new topic's messages")
        assert receiver.ids == {m.id for m in early + late}
        await receiver.aclose()


async def test_group_lost_by_redis_is_created_again(url: str, raw: redis.Redis) -> None:
    """When Redis loses the stream and its groups (a restart without persistence), the
    subscription creates them again and receives what is published next."""
    options = RedisOptions.from_url(url)
    async with opened(lambda: RedisTransport(options)) as transport:
        receiver = Receiver(transport.subscribe("fragile", group="g"), timeout=TIMEOUT)
        before, after = _messages(2), _messages(2)
        await transport.publish("fragile", before)
        await receiver.until_ids([m.id for m in before])
        await raw.delete(f"{options.prefix}:topic:fragile")
        await transport.publish("fragile", after)
        await receiver.until_ids([m.id for m in after], "messages after the loss")
        await receiver.aclose()


async def test_close_removes_idle_consumers(url: str, raw: redis.Redis) -> None:
    """Closing a transport whose deliveries were all acked leaves no consumer behind."""
    options = RedisOptions.from_url(url)
    sent = _messages(5)
    async with opened(lambda: RedisTransport(options)) as transport:
        receiver = Receiver(transport.subscribe("tidy", group="g"), timeout=TIMEOUT)
        await transport.publish("tidy", sent)
        await receiver.until_ids([m.id for m in sent])
        await receiver.aclose()
    assert await raw.xinfo_consumers(f"{options.prefix}:topic:tidy", "g") == []


async def test_maxlen_trims_streams(url: str, raw: redis.Redis) -> None:
    options = RedisOptions.from_url(f"{url}&maxlen=100")
    async with opened(lambda: RedisTransport(options)) as transport:
        for _ in range(10):
            await transport.publish("capped", _messages(100))
    length = await raw.xlen(f"{options.prefix}:topic:capped")
    assert 100 <= length < 1000


async def test_publish_rules(url: str) -> None:
    transport = RedisTransport(url)
    with pytest.raises(ValueError, match="pattern"):
        await transport.publish("a.*", _messages(1))
    with pytest.raises(TypeError, match="bytes"):
        await transport.publish("a", [Message("t", {"not": "bytes"})])
    await transport.publish("a", [])
    await transport.aclose()
    await transport.aclose()
    with pytest.raises(ClosedError):
        await transport.publish("a", _messages(1))
    with pytest.raises(ClosedError):
        transport.subscribe("a", group="g")


async def test_unreachable_redis_is_service_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = from_url(f"redis://user:s3cret@127.0.0.1:{port}/0?timeout=2")
    with pytest.raises(ServiceUnavailable) as raised:
        await transport.start()
    assert f"Redis is not reachable at redis://127.0.0.1:{port}/0" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    await transport.aclose()


def test_options_from_url() -> None:
    options = RedisOptions.from_url(
        "rediss://me:p%40ss@cache.local:6380/3?prefix=orders&maxlen=5000&lease=60&consumer=w1"
    )
    assert (options.host, options.port, options.db, options.tls) == ("cache.local", 6380, 3, True)
    assert (options.username, options.password) == ("me", "p@ss")
    assert (options.prefix, options.maxlen, options.lease, options.consumer) == (
        "orders",
        5000,
        60.0,
        "w1",
    )
    assert "p@ss" not in repr(options)
    assert options.address == "rediss://cache.local:6380/3"
    assert RedisOptions.from_url("redis://127.0.0.1").db == 0
    with pytest.raises(ValueError, match="unknown redis option 'lease_time'"):
        RedisOptions.from_url("redis://127.0.0.1/0?lease_time=3")
    with pytest.raises(ValueError, match="positive"):
        RedisOptions.from_url("redis://127.0.0.1/0?lease=0")
    with pytest.raises(ValueError, match="maxlen cannot be 'many'"):
        RedisOptions.from_url("redis://127.0.0.1/0?maxlen=many")
    with pytest.raises(ValueError, match=r"redis://\*\*\*|expected redis"):
        RedisOptions.from_url("http://127.0.0.1/0")


async def test_foreign_entries_in_the_topic_set_do_not_stop_a_wildcard_subscription(
    url: str, redis_url: str
) -> None:
    """Another program's member of the topic set, naming a key that is no stream or bytes that
    are not UTF-8, is left alone: the pattern consumer goes on."""
    prefix = dict(parse_qsl(urlsplit(url).query))["prefix"]
    handle = Numbers()
    handled, done = handle.handled, handle.done

    client = redis.Redis.from_url(redis_url)
    try:
        await client.sadd(f"{prefix}:topics", "t.bad", b"t.\xff\xfe")
        await client.set(f"{prefix}:topic:t.bad", "not a stream")
        bus = Bus(url)
        bus.subscribe("t.>", handle, group="g")
        async with bus:
            await bus.publish(Message("t.good", b'{"n":9}'))
            await asyncio.wait_for(done.wait(), 30)
            assert bus.health().ok
    finally:
        await client.aclose()
    assert handled == [9]


async def test_keyed_messages_go_to_their_partitions_stream(url: str, raw: redis.Redis) -> None:
    """A keyed message is an entry of its key's partition stream, one without a key of the
    topic's stream; the group is listed once, its lag summed over both."""
    options = RedisOptions.from_url(f"{url}&partitions=4")
    keyed = Message("test.item", b"k", key="user-1")
    async with RedisTransport(options) as transport:
        await transport.publish("split", [keyed, *_messages(2)])
        keys = Keys(options.prefix)
        partition = keys.partition("split", partition_of("user-1", 4))
        assert await raw.xlen(partition) == 1
        assert await raw.xlen(keys.stream("split")) == 2
        for stream in (partition, keys.stream("split")):
            await raw.xgroup_create(stream, "g", id="0")
        (info,) = [i for i in await transport.groups() if i.topic == "split"]
        assert (info.group, info.lag) == ("g", 3)


async def test_a_closed_subscription_hands_its_partitions_on(url: str) -> None:
    """Closing a subscription (its transport staying open) ends its leases once what it handed
    out is settled: another member of the group takes every partition, not only its share."""
    options = RedisOptions.from_url(url)
    async with opened(lambda: RedisTransport(options)) as first:
        closing = Receiver(first.subscribe("items", group="g"), timeout=TIMEOUT)
        sent = one_per_partition(options.partitions)
        await first.publish("items", sent)
        await closing.until_ids([m.id for m in sent], "every partition to the first")
        await closing.aclose()
        async with opened(lambda: RedisTransport(options)) as second:
            staying = Receiver(second.subscribe("items", group="g"), timeout=TIMEOUT)
            sent = one_per_partition(options.partitions)
            await second.publish("items", sent)
            await staying.until_ids([m.id for m in sent], "every partition to the second")
            await staying.aclose()


async def test_a_topic_is_registered_again_after_a_lost_connection(
    url: str, raw: redis.Redis
) -> None:
    """One message to a registered topic is a plain XADD; once the connection was lost (Redis
    may have restarted empty) the next publish puts the topic in the topic set again, so
    pattern subscriptions still find it."""
    transport = RedisTransport(url)
    async with opened(lambda: transport):
        await transport.publish("items", _messages(1))
        await transport.publish("items", _messages(1))
        ident = await (await transport.connected()).client_id()
        await raw.srem(transport.keys.topics, "items")  # as after Redis lost its data
        await raw.client_kill_filter(_id=str(ident))
        await transport.publish("items", _messages(1))
        assert await raw.sismember(transport.keys.topics, "items")
        assert await raw.xlen(transport.keys.stream("items")) == 3


async def test_many_publishes_at_once_share_the_connections(url: str, raw: redis.Redis) -> None:
    """300 publishes at once on ``connections=8`` all succeed, over at most eight connections
    (redis-py's own pool fails a command once 100 are busy)."""
    consumer = uuid.uuid4().hex
    transport = RedisTransport(f"{url}&connections=8&consumer={consumer}")
    await transport.start()
    try:
        await asyncio.gather(*(transport.publish("many", [m]) for m in _messages(300)))
        opened = [c for c in await raw.client_list() if c["name"] == f"tidings:{consumer}"]
    finally:
        await transport.aclose()
    assert 1 <= len(opened) <= 8
    prefix = RedisOptions.from_url(url).prefix
    assert await raw.xlen(f"{prefix}:topic:many") == 300
