"""The PostgreSQL transport beyond the conformance suite: options, errors, crashes, retention."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import asyncpg
import pytest
from brokers import held_messages_come_again

from tidings.dead_letters import dead_letter_from
from tidings.errors import ServiceUnavailable
from tidings.message import Message
from tidings.testing.faults import TcpProxy
from tidings.testing.receiver import Receiver, opened, waiting
from tidings.topics import matches
from tidings.transports import from_url
from tidings.transports.base import Delivery
from tidings.transports.postgres import PostgresOptions, PostgresTransport
from tidings.transports.postgres.wire import topic_regex


async def log_rows(pg_dsn: str, pg_schema: str) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".log'))
    finally:
        await conn.close()


def messages(count: int) -> list[Message]:
    return [Message("item", b'{"n":%d}' % n, {"n": str(n)}) for n in range(count)]


def test_options_from_url() -> None:
    options = PostgresOptions.from_url(
        "postgres://app:secret@db:5433/prod?schema=orders&lease=5&sslmode=disable&pool_size=3"
    )
    assert options.dsn == "postgresql://app:secret@db:5433/prod?sslmode=disable"
    assert (options.schema, options.lease, options.pool_size) == ("orders", 5.0, 3)
    assert isinstance(from_url("postgresql://127.0.0.1/test"), PostgresTransport)
    with pytest.raises(ValueError, match="schema"):
        PostgresOptions.from_url("postgresql://127.0.0.1/test?schema=Robert%27;drop")
    transport = PostgresTransport("postgresql://app:secret@db:5433/prod")
    assert "secret" not in repr(transport)


async def test_unreachable_server_is_named_without_password() -> None:
    transport = PostgresTransport("postgresql://postgres:hunter2@127.0.0.1:1/test")
    with pytest.raises(ServiceUnavailable) as caught:
        await transport.start()
    assert "PostgreSQL is not reachable at 127.0.0.1:1/test" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    await transport.aclose()


class _Unavailable(logging.Handler):
    """Sets ``event`` when a subscription says it found the database unavailable."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__(logging.WARNING)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "is unavailable" in record.getMessage():
            self.event.set()


async def test_a_subscription_looks_again_as_soon_as_the_database_is_back(
    pg_dsn: str, pg_schema: str
) -> None:
    """A subscription that found the database unreachable tries again after a backoff (from
    ``poll`` seconds, an hour here), or as soon as the database is back: its LISTEN connection
    came back, or a notification came."""
    found = asyncio.Event()
    log = logging.getLogger("tidings.transports")
    handler = _Unavailable(found)
    log.addHandler(handler)
    port = urlsplit(pg_dsn).port
    assert port is not None
    try:
        async with TcpProxy("127.0.0.1", port) as proxy:
            url = proxy.redirect(f"{pg_dsn}?schema={pg_schema}&poll=3600")
            async with opened(lambda: PostgresTransport(url)) as transport:
                await proxy.cut()
                receiver = Receiver(transport.subscribe("back", group="g"))
                async with waiting(60, "the subscription to find the database unreachable"):
                    await found.wait()  # logged as its backoff begins
                await proxy.restore()
                sent = messages(1)
                await transport.publish("back", sent)
                await receiver.until_ids([m.id for m in sent], "the message sent once back")
    finally:
        log.removeHandler(handler)


@pytest.mark.parametrize(
    ("pattern", "topic"),
    [("a.b", "a.b"), ("a.b", "a.bc"), ("a.*", "a.b"), ("a.*", "a.b.c"), ("a.>", "a.b.c"),
     ("a.>", "a"), ("*.b", "x.b"), ("a+b.c", "a+b.c"), ("a+b.c", "aab.c")],
)  # fmt: skip
async def test_patterns_match_in_sql_as_in_python(pg_dsn: str, pattern: str, topic: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT $1 ~ $2", topic, topic_regex(pattern)) == matches(
            pattern, topic
        )
    finally:
        await conn.close()


async def test_a_killed_consumers_messages_come_again(pg_dsn: str, pg_schema: str) -> None:
    await held_messages_come_again(f"{pg_dsn}?schema={pg_schema}&lease=0.5")


async def test_acknowledged_messages_are_deleted(pg_dsn: str, pg_schema: str) -> None:
    url = f"{pg_dsn}?schema={pg_schema}"
    sent = messages(30)
    async with opened(lambda: PostgresTransport(url)) as transport:
        receiver = Receiver(transport.subscribe("kept", group="only"))
        await transport.publish("kept", sent)
        await receiver.until_ids([m.id for m in sent])
    async with opened(lambda: PostgresTransport(url)) as transport:
        receiver = Receiver(transport.subscribe("kept", group="only"))
        await transport.publish("kept", messages(1))
        await receiver.until(lambda: len(receiver.ids) == 1, "one more message")
    assert await log_rows(pg_dsn, pg_schema) <= 1, "only the newest message may be left"


async def test_a_dropped_group_no_longer_holds_messages(pg_dsn: str, pg_schema: str) -> None:
    url = f"{pg_dsn}?schema={pg_schema}"

    async def hold(delivery: Delivery) -> None:
        pass

    async with opened(lambda: PostgresTransport(url)) as transport:
        fast = Receiver(transport.subscribe("kept", group="fast"))
        gone = Receiver(transport.subscribe("kept", group="gone"), settle=hold)
        await transport.publish("kept", messages(30))
        await fast.until(lambda: len(fast.deliveries) == 30, "fast's messages")
        await gone.until(lambda: len(gone.deliveries) == 30, "gone's messages")
    async with opened(lambda: PostgresTransport(url)) as transport:
        assert isinstance(transport, PostgresTransport)
        await transport.drop_group("kept", "gone")
        receiver = Receiver(transport.subscribe("kept", group="fast"))
        await transport.publish("kept", messages(1))
        await receiver.until(lambda: len(receiver.deliveries) == 1, "one more message")
    assert await log_rows(pg_dsn, pg_schema) <= 1, "only the newest message may be left"


async def test_a_dead_letter_with_nul_characters_is_stored(pg_dsn: str, pg_schema: str) -> None:
    """PostgreSQL text holds no NUL: a failure whose message or key has one (from another
    transport's producer) is still stored, the NUL shown as a replacement character, instead of
    bouncing between handler and dead-letter store."""
    url = f"{pg_dsn}?schema={pg_schema}"
    message = Message("item", b"{}", {"h": "a\x00b"}, "key\x00")
    letter = dead_letter_from(
        message, topic="item", group="g", data=b"{}", error=ValueError("bad\x00byte"),
        attempts=1, failed_at=0.0,
    )  # fmt: skip
    async with opened(lambda: PostgresTransport(url)) as transport:
        store = transport.dead_letters()
        await store.add(letter)
        (kept,) = await store.list()
    assert kept.error_message == "bad\ufffdbyte"
    assert kept.key == "key\ufffd"
    assert kept.headers == {"h": "a\x00b"}  # headers are bytes in the table: kept as they were
