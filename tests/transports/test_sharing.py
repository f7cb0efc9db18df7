"""How the subscriptions of one group share a SQL queue's keys (``tidings.transports.kit.sharing``),
on SQLite and PostgreSQL: two transports on one database stand for two worker processes."""

from __future__ import annotations

import asyncpg
import pytest

from tidings.message import Message
from tidings.testing.receiver import Receiver, TransportFactory, opened, unique, until
from tidings.transports.base import Transport
from tidings.transports.kit.sharing import Share, key_hash
from tidings.transports.postgres import PostgresTransport
from tidings.transports.sqlite import SqliteTransport

KEYS = [f"key-{n}" for n in range(40)] + ["ключ", "鍵", ""]


def test_the_key_hash_is_md5_of_the_utf8_key() -> None:
    assert key_hash("key-1") == 0x21AF6B8B  # md5(b"key-1") begins 21af6b8b
    assert key_hash("鍵") == key_hash("鍵".encode())


def test_a_share_ranks_the_live_members_by_owner() -> None:
    assert Share.of("b", ["c", "a", "b"]) == Share(1, 3)
    assert Share.of("b", ["a"]) == Share(1, 2), "a member not written yet counts itself"


async def test_postgres_computes_the_same_hash(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT k, ('x' || substr(md5(k), 1, 8))::bit(32)::bigint FROM unnest($1::text[]) k",
            KEYS,
        )
    finally:
        await conn.close()
    assert dict(rows) == {key: key_hash(key) for key in KEYS}


@pytest.fixture(params=["sqlite", "postgres"])
def factory(request: pytest.FixtureRequest) -> TransportFactory:
    """Transports on one database whose leases (and memberships) last a minute."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        return lambda: SqliteTransport(f"{url}?lease=60")
    dsn, schema = request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
    return lambda: PostgresTransport(f"{dsn}?schema={schema}&lease=60")


def one_per_key(round_: int) -> list[Message]:
    return [Message("item", b"{}", {"n": str(round_)}, key) for key in KEYS[:40]]


async def publish_round(
    publisher: Transport, topic: str, receivers: list[Receiver], round_: int
) -> None:
    """One message per key, returning once one of ``receivers`` got each."""
    messages = one_per_key(round_)
    sent = {m.id for m in messages}
    await publisher.publish(topic, messages)
    await until(receivers, lambda: sent <= set().union(*(r.ids for r in receivers)), "a round")


async def test_keys_spread_and_a_closed_subscription_leaves_them_at_once(
    factory: TransportFactory,
) -> None:
    """Two subscriptions of a group both get keys; once one closes, the other gets every key
    at once, not after the closed one's membership ran out (a minute)."""
    topic, group = unique("share"), unique("group")
    async with opened(factory) as one, opened(factory) as other, opened(factory) as publisher:
        a = Receiver(one.subscribe(topic, group=group, prefetch=10), timeout=20)
        b = Receiver(other.subscribe(topic, group=group, prefetch=10), timeout=20)
        round_ = 0
        while not (a.deliveries and b.deliveries):  # until both are members with keys
            await publish_round(publisher, topic, [a, b], round_)
            round_ += 1
        await b.aclose()
        sent = one_per_key(round_)
        await publisher.publish(topic, sent)
        await a.until_ids([m.id for m in sent], "every key to reach the subscription left")
        await a.aclose()


async def received(receivers: list[Receiver], count: int) -> None:
    await until(receivers, lambda: sum(len(r.ids) for r in receivers) >= count, f"{count}")


async def test_messages_without_a_key_reach_every_subscription(factory: TransportFactory) -> None:
    topic, group = unique("share"), unique("group")
    async with opened(factory) as one, opened(factory) as other, opened(factory) as publisher:
        a = Receiver(one.subscribe(topic, group=group, prefetch=10))
        b = Receiver(other.subscribe(topic, group=group, prefetch=10))
        for batch in range(1, 21):
            if a.deliveries and b.deliveries:
                break
            await publisher.publish(topic, [Message("item", b"{}") for _ in range(50)])
            await received([a, b], 50 * batch)
        assert a.deliveries, "one subscription got no message without a key"
        assert b.deliveries, "one subscription got no message without a key"
        await a.aclose()
        await b.aclose()
