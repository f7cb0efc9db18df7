"""``tidings dlq``: list, show, replay and purge the dead letters of a transport."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
from typer.testing import Result

from tidings import Bus, Message
from tidings.dead_letters import UNREADABLE

Invoke = Callable[..., Result]


class Refused(Exception):
    pass


async def dead_letter(url: str, topic: str, count: int) -> None:
    """Make ``count`` messages on ``topic`` fail in group ``billing`` into ``url``'s store."""

    def refuse(message: Message) -> None:
        raise Refused(f"cannot bill {message.key}")

    async with Bus(url) as bus:
        bus.subscribe(topic, refuse, group="billing")
        for n in range(count):
            payload = msgspec.json.encode({"n": n})
            await bus.publish_and_wait(Message(topic, payload, {"tenant": "a"}, f"key-{n}"))


def listed(cli: Invoke, url: str, *args: str) -> list[dict[str, Any]]:
    result = cli("dlq", "list", "--url", url, "--json", *args)
    assert result.exit_code == 0, result.output
    letters: list[dict[str, Any]] = msgspec.json.decode(result.stdout)
    return letters


def test_list_shows_each_letter_with_its_reason(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 2))

    letters = listed(cli, sqlite_url)

    assert [letter["data"] for letter in letters] == [{"n": 0}, {"n": 1}]
    first = letters[0]
    assert first["topic"] == "invoice.due"
    assert first["group"] == "billing"
    assert first["key"] == "key-0"
    assert first["headers"] == {"tenant": "a"}
    assert first["error_type"].endswith("Refused")
    assert first["error_message"] == "cannot bill key-0"
    assert first["attempts"] == 1


def test_list_filters_by_topic_and_limits(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 3))
    asyncio.run(dead_letter(sqlite_url, "invoice.paid", 1))

    assert len(listed(cli, sqlite_url, "--topic", "invoice.paid")) == 1
    assert len(listed(cli, sqlite_url, "--limit", "2")) == 2


def test_list_pages_with_after(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 5))
    first = listed(cli, sqlite_url, "--limit", "2")
    rest = listed(cli, sqlite_url, "--after", first[-1]["id"])
    assert [letter["data"]["n"] for letter in first + rest] == [0, 1, 2, 3, 4]
    missing = cli("dlq", "list", "--url", sqlite_url, "--after", "no-such-letter")
    assert missing.exit_code == 1
    assert "no-such-letter" in missing.output


def test_list_prints_a_table(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 1))
    letter_id = listed(cli, sqlite_url)[0]["id"]

    result = cli("dlq", "list", "--url", sqlite_url)

    assert result.exit_code == 0, result.output
    assert "1 dead letter(s)" in result.stdout
    assert letter_id in result.stdout
    assert "Refused" in result.stdout


def test_show_gives_the_message_and_the_traceback(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 1))
    letter_id = listed(cli, sqlite_url)[0]["id"]

    as_json = cli("dlq", "show", letter_id, "--url", sqlite_url, "--json")
    human = cli("dlq", "show", letter_id, "--url", sqlite_url)

    assert as_json.exit_code == 0, as_json.output
    shown = msgspec.json.decode(as_json.stdout)
    assert shown["id"] == letter_id
    assert "Refused: cannot bill key-0" in shown["traceback"]
    assert human.exit_code == 0, human.output
    assert "traceback" in human.stdout
    assert "cannot bill key-0" in human.stdout


def test_show_of_an_unknown_id_fails(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 1))
    result = cli("dlq", "show", "no-such-id", "--url", sqlite_url)

    assert result.exit_code == 1
    assert "no-such-id" in result.stderr


async def handled_after_replay(url: str, topic: str, count: int) -> list[Any]:
    """What the group ``billing``, fixed now, handles once the letters were replayed."""
    handled: list[Any] = []
    done = asyncio.Event()

    def bill(message: Message) -> None:
        handled.append(message.data)
        if len(handled) == count:
            done.set()

    async with Bus(url) as bus:
        bus.subscribe(topic, bill, group="billing")
        async with asyncio.timeout(30):
            await done.wait()
    return handled


def test_replay_delivers_a_letter_again_and_removes_it(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 2))
    first, second = listed(cli, sqlite_url)

    result = cli("dlq", "replay", first["id"], "--url", sqlite_url)

    assert result.exit_code == 0, result.output
    assert "replayed 1 dead letter(s)" in result.stdout
    assert [letter["id"] for letter in listed(cli, sqlite_url)] == [second["id"]]
    assert asyncio.run(handled_after_replay(sqlite_url, "invoice.due", 1)) == [{"n": 0}]


def test_replay_without_ids_replays_all(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 3))

    result = cli("dlq", "replay", "--url", sqlite_url, "--json")

    assert msgspec.json.decode(result.stdout) == {"replayed": 3}
    assert listed(cli, sqlite_url) == []
    handled = asyncio.run(handled_after_replay(sqlite_url, "invoice.due", 3))
    assert sorted(item["n"] for item in handled) == [0, 1, 2]


def test_purge_removes_the_given_letters(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 3))
    ids = [letter["id"] for letter in listed(cli, sqlite_url)]

    result = cli("dlq", "purge", ids[0], ids[2], "--url", sqlite_url, "--json")

    assert msgspec.json.decode(result.stdout) == {"purged": 2}
    assert [letter["id"] for letter in listed(cli, sqlite_url)] == [ids[1]]


def test_purging_everything_asks_first(cli: Invoke, sqlite_url: str) -> None:
    asyncio.run(dead_letter(sqlite_url, "invoice.due", 2))

    declined = cli("dlq", "purge", "--url", sqlite_url, input="n\n")
    assert declined.exit_code == 1
    assert len(listed(cli, sqlite_url)) == 2

    confirmed = cli("dlq", "purge", "--url", sqlite_url, input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "purged 2 dead letter(s)" in confirmed.stdout
    assert listed(cli, sqlite_url) == []

    asyncio.run(dead_letter(sqlite_url, "invoice.due", 1))
    assert cli("dlq", "purge", "--url", sqlite_url, "--yes").exit_code == 0
    assert listed(cli, sqlite_url) == []


def test_dead_letters_on_a_broker(cli: Invoke, broker_url: str) -> None:
    topic = f"invoice.due{uuid.uuid4().hex[:8]}"
    asyncio.run(dead_letter(broker_url, topic, 3))
    letters = listed(cli, broker_url, "--topic", topic)
    ids = [letter["id"] for letter in letters]
    assert sorted(letter["data"]["n"] for letter in letters) == [0, 1, 2]

    shown = cli("dlq", "show", ids[0], "--url", broker_url, "--json")
    replayed = cli("dlq", "replay", ids[0], "--url", broker_url, "--json")
    purged = cli("dlq", "purge", *ids[1:], "--url", broker_url, "--json")

    assert msgspec.json.decode(shown.stdout)["id"] == ids[0]
    assert msgspec.json.decode(replayed.stdout) == {"replayed": 1}
    assert msgspec.json.decode(purged.stdout) == {"purged": 2}
    assert listed(cli, broker_url, "--topic", topic) == []


def test_a_deeply_nested_payload_is_listed_as_text(cli: Invoke, sqlite_url: str) -> None:
    """A payload nested past the JSON decoder's depth (dead-lettered as a DecodeError) is shown
    as text rather than failing the listing."""
    deep = b"[" * 1000 + b"]" * 1000

    async def fail_one() -> None:
        async with Bus(sqlite_url) as bus:
            bus.subscribe("deep", lambda message: None, group="g")
            await bus.publish_and_wait(Message("deep", deep))

    asyncio.run(fail_one())

    (letter,) = listed(cli, sqlite_url)
    assert letter["data"] == deep.decode()
    assert letter["error_type"] == "tidings.errors.DecodeError"


async def _damage_postgres(url: str) -> None:
    import asyncpg

    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query))["schema"]
    connection = await asyncpg.connect(parts._replace(query="").geturl())
    try:
        await connection.execute(
            f'UPDATE "{schema}".dead_letters SET headers = $1 '
            f'WHERE n = (SELECT min(n) + 1 FROM "{schema}".dead_letters)',
            b"{not json",
        )
    finally:
        await connection.close()


async def _damage_redis(url: str) -> None:
    import redis.asyncio as redis

    from tidings.transports.redis import RedisOptions, RedisTransport

    keys = RedisTransport(RedisOptions.from_url(url)).keys
    client = redis.Redis.from_url(urlsplit(url)._replace(query="").geturl())
    try:
        entry = await client.xadd(
            keys.dead_letters, {"id": "damaged", "topic": "invoice.due", "letter": b"{"}
        )
        await client.hset(keys.dead_letter_index, "damaged", entry)
    finally:
        await client.aclose()


# One damaged dead-letter record neither hides the others nor goes unseen: ``dlq list`` shows it
# in its place, marked unreadable (error type CorruptRecord, the store and the letter named in
# the reason); ``replay`` leaves it alone and ``purge ID`` removes it.


async def _damage_nats(url: str) -> None:
    import nats

    prefix = dict(parse_qsl(urlsplit(url).query))["prefix"]
    connection = await nats.connect(urlsplit(url)._replace(query="").geturl())
    try:
        await connection.jetstream().publish(f"{prefix}_dlq.damaged", b"{")
    finally:
        await connection.close()


def damage(url: str) -> None:
    """Spoil the second letter's headers (SQL), or add a record that is not JSON (Redis, NATS)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        with sqlite3.connect(urlsplit(url).path[1:]) as connection:
            connection.execute(
                "UPDATE tidings_dead_letters SET headers = x'7b', attempts = 'many' "
                "WHERE n = (SELECT min(n) + 1 FROM tidings_dead_letters)"
            )
    elif scheme.startswith("postgres"):
        asyncio.run(_damage_postgres(url))
    elif scheme == "nats":
        asyncio.run(_damage_nats(url))
    else:
        asyncio.run(_damage_redis(url))


@pytest.mark.parametrize("broker_url", ["postgresql", "redis", "nats"], indirect=True)
def test_a_damaged_letter_is_listed_marked_and_can_be_purged(cli: Invoke, broker_url: str) -> None:
    check_damaged_letter(cli, broker_url)


def test_a_damaged_sqlite_letter_is_listed_marked_and_can_be_purged(
    cli: Invoke, sqlite_url: str
) -> None:
    check_damaged_letter(cli, sqlite_url)


def check_damaged_letter(cli: Invoke, url: str) -> None:
    asyncio.run(dead_letter(url, "invoice.due", 3))
    damage(url)

    letters = listed(cli, url)
    readable = [letter for letter in letters if letter["error_type"] != UNREADABLE]
    unreadable = [letter for letter in letters if letter["error_type"] == UNREADABLE]
    assert len(readable) == (2 if urlsplit(url).scheme in ("sqlite", "postgresql") else 3)
    assert unreadable
    assert all("corrupt record" in letter["error_message"] for letter in unreadable)
    assert all(repr(letter["id"]) in letter["error_message"] for letter in unreadable)
    human = cli("dlq", "list", "--url", url)
    assert human.exit_code == 0
    assert "CorruptRecord" in human.stdout

    replayed = cli("dlq", "replay", "--url", url, "--json")
    assert replayed.exit_code == 0, replayed.output
    assert msgspec.json.decode(replayed.stdout) == {"replayed": len(readable)}
    refused = cli("dlq", "replay", unreadable[0]["id"], "--url", url)
    assert refused.exit_code == 1
    assert "cannot be replayed" in refused.stderr

    assert [letter["id"] for letter in listed(cli, url)] == [u["id"] for u in unreadable]
    purged = cli("dlq", "purge", *[u["id"] for u in unreadable], "--url", url, "--json")
    assert msgspec.json.decode(purged.stdout) == {"purged": len(unreadable)}
    assert listed(cli, url) == []
