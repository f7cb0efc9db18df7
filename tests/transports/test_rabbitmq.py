"""The RabbitMQ transport against the local broker: what is specific to RabbitMQ.

The behaviour every transport shares is checked by the conformance suite
(``test_rabbitmq_suite.py``); the broker restart has its own module (``test_rabbitmq_restart.py``).
Every test uses its own exchange, so its queues never meet another test's; the session removes
them at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import aiormq
import pytest
from brokers import RABBITMQ, shell, wait_ready
from pamqp.commands import Basic

from tidings.dead_letters import UNREADABLE, DeadLetter, dead_letter_from
from tidings.errors import ClosedError, NotFound, ServiceUnavailable, TransportError
from tidings.message import Message
from tidings.transports import from_url
from tidings.transports.rabbitmq import (
    RabbitMQDelivery,
    RabbitMQOptions,
    RabbitMQTransport,
    binding_key,
    delay_bucket,
    fast_path,
    queue_name,
)
from tidings.transports.rabbitmq.wire import partitioned_exchange

NAMESPACE = f"tidings-test-{uuid.uuid4().hex[:8]}"
"""Every exchange and queue of this session starts with it."""


# -- fixtures and helpers (also used by the other RabbitMQ test modules) --------------------------


def delete_objects(url: str, prefix: str) -> None:
    """Delete the queues and exchanges whose names start with ``prefix``, through the management
    API. A courtesy: without the API they stay. Each test cleans up after itself, because every
    quorum queue holds file handles of the broker (the partition queues are many)."""
    base, user, password, vhost = RabbitMQOptions(url).management()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    where = quote(vhost, safe="")

    def call(path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(base + path, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response) if method == "GET" else None

    try:
        for kind in ("queues", "exchanges"):
            for found in call(f"{kind}/{where}?columns=name"):
                if found["name"].startswith(prefix):
                    with contextlib.suppress(urllib.error.HTTPError):  # gone meanwhile
                        call(f"{kind}/{where}/{quote(found['name'], safe='')}", "DELETE")
    except (urllib.error.URLError, OSError):
        pass  # no management API here


@pytest.fixture(scope="session")
def amqp_namespace(amqp_url: str) -> Iterator[str]:
    yield NAMESPACE
    delete_objects(amqp_url, NAMESPACE)


@pytest.fixture
def exchange(amqp_namespace: str, amqp_url: str) -> Iterator[str]:
    name = f"{amqp_namespace}-{uuid.uuid4().hex[:8]}"
    yield name
    delete_objects(amqp_url, name)


@pytest.fixture
def options(amqp_url: str, exchange: str) -> RabbitMQOptions:
    return RabbitMQOptions(amqp_url, exchange=exchange)


@pytest.fixture
async def transport(options: RabbitMQOptions) -> AsyncIterator[RabbitMQTransport]:
    rabbit = RabbitMQTransport(options)
    await rabbit.start()
    yield rabbit
    await rabbit.aclose()


async def restart_rabbitmq() -> None:
    """Stop the local RabbitMQ node, start it again and wait until it accepts clients."""
    await shell("rabbitmqctl stop")
    await shell(RABBITMQ.start)
    await wait_ready(RABBITMQ)


async def take(
    batches: AsyncIterator[list[RabbitMQDelivery]], count: int, *, ack: bool = False
) -> list[RabbitMQDelivery]:
    """The next ``count`` deliveries (or more, if the last batch holds more), acked on the
    way when ``ack``."""
    got: list[RabbitMQDelivery] = []
    async with asyncio.timeout(20):
        while len(got) < count:
            batch = await anext(batches)
            got.extend(batch)
            for delivery in batch if ack else ():
                await delivery.ack()
    return got


def messages(count: int, topic: str = "t.item") -> list[Message]:
    return [Message(topic, f"payload {n}".encode(), {"n": str(n)}) for n in range(count)]


async def ready_count(url: str, queue: str) -> int:
    """Messages waiting in ``queue``, not counting those delivered and unacknowledged."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.queue_declare(queue, passive=True)
        return declared.message_count or 0
    finally:
        await connection.close()


# -- naming and options ---------------------------------------------------------------------------


def test_patterns_become_binding_keys() -> None:
    assert binding_key("user.signed_up") == "user.signed_up"
    assert binding_key("user.*") == "user.*"
    assert binding_key("user.>") == "user.*.#", "one or more tokens, not zero or more"
    assert binding_key(">") == "*.#"


def test_queue_names_are_readable_and_unique() -> None:
    assert queue_name("tidings", "audit", "user.*") == "tidings:audit:user.+"
    assert queue_name("tidings", "audit", "user.>") == "tidings:audit:user.#"
    odd = queue_name("tidings", "app.handlers.<locals>.on_user", "user.*")
    assert odd.startswith("tidings:app.handlers._locals_.on_user:user.+@")
    assert odd != queue_name("tidings", "app.handlers.(locals).on_user", "user.*")
    assert len(queue_name("tidings", "g" * 300, "t")) == 255


def test_delays_share_a_few_queues() -> None:
    assert delay_bucket(0.3) >= 300
    assert delay_bucket(0.001) == 1
    buckets = {delay_bucket(n / 100) for n in range(1, 3001)}  # 10 ms .. 30 s
    assert len(buckets) < 50
    assert all(delay_bucket(d) <= d * 1000 * 1.2 + 1 for d in (0.05, 0.1, 0.7, 2.5, 30.0))


def test_options_from_url() -> None:
    options = RabbitMQOptions.from_url(
        "amqps://app:secret@mq.example:5671/prod?exchange=orders&reconnect_timeout=60"
        "&heartbeat=30&cafile=/etc/ca.pem"
    )
    assert options.exchange == "orders"
    assert options.reconnect_timeout == 60.0
    assert (
        options.url == "amqps://app:secret@mq.example:5671/prod?heartbeat=30&cafile=%2Fetc%2Fca.pem"
    )
    assert "secret" not in repr(RabbitMQTransport(options))
    assert isinstance(from_url("amqp://guest:guest@127.0.0.1:5672/"), RabbitMQTransport)
    with pytest.raises(ValueError, match="positive"):
        RabbitMQOptions.from_url("amqp://127.0.0.1/?connect_timeout=0")
    with pytest.raises(ValueError, match="exchange"):
        RabbitMQOptions.from_url("amqp://127.0.0.1/?exchange=amq.topic")
    with pytest.raises(ValueError, match="amqp"):
        RabbitMQOptions.from_url("redis://127.0.0.1/")


async def test_unreachable_broker_is_named_without_password() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = RabbitMQTransport(f"amqp://guest:s3cret@127.0.0.1:{port}/")
    with pytest.raises(ServiceUnavailable) as raised:
        await transport.start()
    assert "RabbitMQ" in str(raised.value)
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    await transport.aclose()


def test_management_api_address() -> None:
    """By default the broker's host on the management port, with the broker URL's credentials;
    a ``management_url`` with its own credentials overrides both."""
    options = RabbitMQOptions.from_url("amqp://app:s3cret@mq.example:5672/prod%2Fa")
    assert options.management() == ("http://mq.example:15672/api/", "app", "s3cret", "prod/a")
    tls = RabbitMQOptions.from_url("amqps://mq.example/")
    assert tls.management() == ("https://mq.example:15671/api/", "guest", "guest", "/")
    given = RabbitMQOptions.from_url(
        "amqp://app:s3cret@mq.example/?management_url=https%3A%2F%2Fops%3Apw%40admin.example%2Fmq"
    )
    assert given.management() == ("https://admin.example/mq/api/", "ops", "pw", "/")
    assert "pw" not in repr(given)


async def test_groups_without_the_management_api_say_how_to_get_it(
    options: RabbitMQOptions,
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = RabbitMQTransport(replace(options, management_url=f"http://127.0.0.1:{port}/"))
    with pytest.raises(ServiceUnavailable, match=r"rabbitmq_management.*management_url"):
        await transport.groups()
    await transport.aclose()


# -- publishing and consuming ---------------------------------------------------------------------


async def test_envelope_travels_in_native_properties(
    transport: RabbitMQTransport, amqp_url: str, exchange: str
) -> None:
    """Other AMQP clients see the id and type as message properties, the message persistent;
    a keyed message comes through the exchange of keyed messages, after its partition."""
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    declared = await channel.queue_declare(exclusive=True)
    assert declared.queue is not None
    await channel.queue_bind(declared.queue, exchange, routing_key="t.native")
    keyed = partitioned_exchange(exchange)
    await channel.queue_bind(declared.queue, keyed, routing_key="*.t.native")
    sent = Message("user.signed_up", b'{"id": 1}', {"tenant": "a"}, key="user-1")
    await transport.publish("t.native", [sent])
    got = await channel.basic_get(declared.queue, no_ack=True)
    props = got.header.properties
    assert (props.message_id, props.message_type, props.delivery_mode) == (sent.id, sent.type, 2)
    assert props.headers is not None
    assert props.headers["tenant"] == "a"
    assert props.headers["tidings-key"] == "user-1"
    assert props.headers["tidings-time"] == repr(sent.timestamp)
    await connection.close()


async def test_messages_of_other_producers(
    transport: RabbitMQTransport, amqp_url: str, exchange: str
) -> None:
    """A message without tidings' envelope is delivered: its routing key as type, its header
    values as text."""
    subscription = transport.subscribe("legacy.*", group="g")
    batches = aiter(subscription)
    assert subscription.opening is not None
    await subscription.opening
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    props = Basic.Properties(headers={"retries": 3, "urgent": True})
    await channel.basic_publish(
        b"raw", exchange=exchange, routing_key="legacy.invoice", properties=props
    )
    await connection.close()
    (delivery,) = await take(batches, 1)
    assert delivery.message.type == "legacy.invoice"
    assert delivery.message.data == b"raw"
    assert dict(delivery.message.headers) == {"retries": "3", "urgent": "True"}
    assert delivery.attempt == 1
    await delivery.ack()
    await subscription.aclose()


async def test_subscribe_then_publish_before_iterating(options: RabbitMQOptions) -> None:
    """A publish after subscribe() reaches the group, even before the subscription is iterated
    and on a transport not started yet (publish connects and declares the queue first)."""
    async with _opened(options) as transport:
        subscription = transport.subscribe("t.early", group="started")
        sent = messages(3, "t.early")
        await transport.publish("t.early", sent)
        got = await take(aiter(subscription), 3, ack=True)
        assert [d.message for d in got] == sent
        await subscription.aclose()
    transport = RabbitMQTransport(options)
    subscription = transport.subscribe("t.early", group="lazy")
    await transport.publish("t.early", sent)
    got = await take(aiter(subscription), 3, ack=True)
    assert [d.message for d in got] == sent
    await transport.aclose()


async def test_batches_keep_publish_order(transport: RabbitMQTransport) -> None:
    subscription = transport.subscribe("t.order", group="g", prefetch=100)
    sent = messages(1200, "t.order")
    await transport.publish("t.order", sent)
    got = await take(aiter(subscription), len(sent), ack=True)
    assert [d.message.id for d in got] == [m.id for m in sent]
    await subscription.aclose()


def test_fast_path_was_tested_with_the_installed_clients() -> None:
    """The private bulk publish path runs only with client versions it was tested with: a new
    aiormq or pamqp falls back to the public path, slower, until this module passes with it."""
    found = fast_path.installed()
    assert all(found[name] in tested for name, tested in fast_path.TESTED.items()), (
        f"installed {found}, tested {fast_path.TESTED}: run this module with the installed "
        "versions and add them to fast_path.TESTED"
    )
    assert fast_path.ENABLED


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "public path"])
async def test_both_publish_paths_keep_order_and_confirm(
    transport: RabbitMQTransport, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    monkeypatch.setattr(fast_path, "ENABLED", fast and fast_path.ENABLED)
    subscription = transport.subscribe("t.paths", group="g", prefetch=500)
    sent = messages(1100, "t.paths")
    await transport.publish("t.paths", sent)
    got = await take(aiter(subscription), len(sent), ack=True)
    assert [d.message.id for d in got] == [m.id for m in sent]
    await subscription.aclose()


async def test_prefetch_bounds_unsettled_deliveries(
    transport: RabbitMQTransport, amqp_url: str, exchange: str
) -> None:
    subscription = transport.subscribe("t.prefetch", group="g", prefetch=5)
    await transport.publish("t.prefetch", messages(20, "t.prefetch"))
    batches = aiter(subscription)
    held = await take(batches, 5)
    assert len(held) == 5
    assert await ready_count(amqp_url, subscription.queue) == 15
    for delivery in held:
        await delivery.ack()
    rest = await take(batches, 15, ack=True)
    assert len(rest) == 15
    await subscription.aclose()


async def test_acks_out_of_order_settle_everything(options: RabbitMQOptions) -> None:
    """Acks sent in bulk for deliveries settled in any order leave nothing to come again."""
    sent = messages(300, "t.acks")
    async with _opened(options) as transport:
        subscription = transport.subscribe("t.acks", group="g", prefetch=300)
        await transport.publish("t.acks", sent)
        got = await take(aiter(subscription), len(sent))
        for delivery in reversed(got[1::2]):  # every other one, the latest first
            await delivery.ack()
        await asyncio.sleep(0)  # one turn of the loop: these acks go out on their own
        for delivery in got:
            await delivery.ack()  # settling twice is harmless
        await subscription.aclose()
    async with _opened(options) as transport:
        subscription = transport.subscribe("t.acks", group="g")
        sentinel = messages(1, "t.acks")
        await transport.publish("t.acks", sentinel)
        (delivery,) = await take(aiter(subscription), 1)
        assert delivery.message.id == sentinel[0].id, "an acked message came again"
        await delivery.ack()
        await subscription.aclose()


async def test_attempts_count_nacks_delays_and_lost_consumers(options: RabbitMQOptions) -> None:
    """Attempt 2 after a nack, 3 after a delayed nack (not earlier than the delay), 4 after the
    consumer went away holding it; the others are not held up meanwhile."""
    first, other = messages(2, "t.attempts")
    async with _opened(options) as transport:
        subscription = transport.subscribe("t.attempts", group="g")
        batches = aiter(subscription)
        await transport.publish("t.attempts", [first, other])
        got = await take(batches, 2)
        assert [(d.message.id, d.attempt) for d in got] == [(first.id, 1), (other.id, 1)]
        await got[0].nack()
        await got[1].ack()
        (again,) = await take(batches, 1)
        assert (again.message, again.attempt) == (first, 2)
        nacked_at = time.monotonic()
        await again.nack(0.3)
        (delayed,) = await take(batches, 1)
        assert time.monotonic() - nacked_at >= 0.3
        assert (delayed.message, delayed.attempt, delayed.topic) == (first, 3, "t.attempts")
        assert delayed.message.timestamp == first.timestamp
    async with _opened(options) as transport:  # the holder closed without settling it
        subscription = transport.subscribe("t.attempts", group="g")
        (last,) = await take(aiter(subscription), 1)
        assert (last.message, last.attempt) == (first, 4)
        await last.ack()
        await subscription.aclose()


async def test_delayed_retry_goes_to_the_failing_group_only(transport: RabbitMQTransport) -> None:
    failing = transport.subscribe("t.retry", group="failing")
    fine = transport.subscribe("t.retry", group="fine")
    failing_batches, fine_batches = aiter(failing), aiter(fine)
    (sent,) = messages(1, "t.retry")
    await transport.publish("t.retry", [sent])
    (got,) = await take(failing_batches, 1)
    await got.nack(0.05)
    (again,) = await take(failing_batches, 1)
    assert (again.message.id, again.attempt) == (sent.id, 2)
    await again.ack()
    sentinel = messages(1, "t.retry")
    await transport.publish("t.retry", sentinel)
    got_fine = await take(fine_batches, 2)
    assert [d.message.id for d in got_fine] == [sent.id, sentinel[0].id]
    for delivery in got_fine:
        await delivery.ack()
    await failing.aclose()
    await fine.aclose()


async def test_closed_subscription_gives_back_what_it_prefetched(
    transport: RabbitMQTransport,
) -> None:
    """Deliveries prefetched but never handed out go to the other consumers of the group at
    once; those handed out can still be acked after aclose()."""
    sent = messages(30, "t.giveback")
    first = transport.subscribe("t.giveback", group="g", prefetch=30)
    await transport.publish("t.giveback", sent)
    handed = await take(aiter(first), 1)
    second = transport.subscribe("t.giveback", group="g", prefetch=30)
    await first.aclose()
    for delivery in handed:
        await delivery.ack()
    rest = await take(aiter(second), len(sent) - len(handed))
    assert {d.message.id for d in handed + rest} == {m.id for m in sent}
    for delivery in rest:
        await delivery.ack()
    await second.aclose()


async def test_wildcards_follow_topic_semantics(transport: RabbitMQTransport) -> None:
    one = transport.subscribe("w.*", group="one")
    many = transport.subscribe("w.>", group="many")
    for topic in ("w", "w.a", "w.a.b"):
        await transport.publish(topic, [Message(topic, topic.encode())])
    await transport.publish("w.z", [Message("end", b"")])
    got_one = await take(aiter(one), 2)
    got_many = await take(aiter(many), 3)
    assert [d.message.data for d in got_one] == [b"w.a", b""]
    assert [d.message.data for d in got_many] == [b"w.a", b"w.a.b", b""]
    assert [d.topic for d in got_many] == ["w.a", "w.a.b", "w.z"], "the concrete topics"
    for delivery in got_one + got_many:
        await delivery.ack()
    await one.aclose()
    await many.aclose()


async def test_publish_rejects_patterns_and_closed_transport(options: RabbitMQOptions) -> None:
    transport = RabbitMQTransport(options)
    with pytest.raises(ValueError, match="pattern"):
        await transport.publish("t.*", messages(1))
    with pytest.raises(TypeError, match="bytes"):
        await transport.publish("t.lazy", [Message("t.item", {"not": "encoded"})])
    await transport.publish("t.lazy", messages(1))  # connects on first use
    subscription = transport.subscribe("t.lazy", group="g")
    await transport.aclose()
    await transport.aclose()
    with pytest.raises(ClosedError):
        await transport.publish("t.lazy", messages(1))
    with pytest.raises(ClosedError):
        transport.subscribe("t.lazy", group="g")
    assert [batch async for batch in subscription] == []


async def test_queue_declared_differently_is_a_transport_error(
    transport: RabbitMQTransport, amqp_url: str, exchange: str
) -> None:
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    await channel.queue_declare(queue_name(exchange, "g", "t.classic"), durable=True)
    await connection.close()
    subscription = transport.subscribe("t.classic", group="g")
    with pytest.raises(TransportError, match="failed declaring the queue"):
        await anext(aiter(subscription))


# -- dead letters -------------------------------------------------------------------------------


def letter(topic: str, n: int) -> DeadLetter:
    message = Message("t.item", f"payload {n}".encode(), {"n": str(n)}, key=f"k{n}")
    return dead_letter_from(
        message,
        topic=topic,
        group="g",
        data=message.data,
        error=ValueError(f"failure {n}"),
        attempts=3,
        failed_at=time.time(),
    )


async def test_dead_letters_keep_their_order(transport: RabbitMQTransport) -> None:
    store = transport.dead_letters()
    assert store is transport.dead_letters()
    letters = [letter("t.a" if n % 2 else "t.b", n) for n in range(6)]
    for each in letters:
        await store.add(each)
    assert await store.list() == letters
    assert await store.list() == letters, "listing put every letter back in its place"
    assert await store.list(topic="t.a", limit=2) == [letters[1], letters[3]]
    assert await store.list(limit=0) == []
    assert await store.get(letters[4].id) == letters[4]
    with pytest.raises(NotFound):
        await store.get("missing")
    assert await store.remove([letters[2].id, letters[4].id, "missing"]) == 2
    assert await store.remove([]) == 0
    assert await store.list() == [letters[0], letters[1], letters[3], letters[5]]


async def test_dead_letters_read_by_several_clients_at_once(options: RabbitMQOptions) -> None:
    """Readers in other processes never see a partial list: reads take turns."""
    async with _opened(options) as one, _opened(options) as two:
        letters = [letter("t.a", n) for n in range(40)]
        for each in letters:
            await one.dead_letters().add(each)
        lists = await asyncio.gather(
            *[client.dead_letters().list(limit=100) for client in (one, two) for _ in range(3)]
        )
        assert all(found == letters for found in lists)
        removed = await asyncio.gather(
            one.dead_letters().remove([x.id for x in letters[:20]]),
            two.dead_letters().remove([x.id for x in letters[10:]]),
        )
        assert sum(removed) == 40
        assert await one.dead_letters().list() == []


async def test_dead_letter_queue_deleted_meanwhile_comes_back(
    transport: RabbitMQTransport, amqp_url: str
) -> None:
    """A record the broker cannot route (its queue was deleted) is not dropped: the queue is
    declared again."""
    store = transport.dead_letters()
    await store.add(letter("t.a", 1))
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    await channel.queue_delete(store.queue)
    await connection.close()
    second = letter("t.a", 2)
    await store.add(second)
    assert await store.list() == [second]


async def test_dead_letter_queue_lists_a_foreign_record_as_unreadable(
    transport: RabbitMQTransport, amqp_url: str
) -> None:
    store = transport.dead_letters()
    kept = letter("t.a", 1)
    await store.add(kept)
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    await channel.basic_publish(
        b"not json", routing_key=store.queue, properties=Basic.Properties(message_id="x-1")
    )
    await connection.close()
    listed = await store.list()
    assert listed[0] == kept
    assert [(u.id, u.error_type) for u in listed[1:]] == [("x-1", UNREADABLE)]
    assert await store.remove(["x-1"]) == 1
    assert await store.list() == [kept]


# -- helpers ------------------------------------------------------------------------------------


class _opened:
    """A started transport, closed on exit."""

    def __init__(self, options: RabbitMQOptions) -> None:
        self.transport = RabbitMQTransport(options)

    async def __aenter__(self) -> RabbitMQTransport:
        await self.transport.start()
        return self.transport

    async def __aexit__(self, *_: object) -> None:
        await self.transport.aclose()
