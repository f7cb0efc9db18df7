"""``tidings publish`` and ``tidings tail`` against a transport shared between processes."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from typer.testing import Result

from tidings import Bus, Delivery, Malformed, Message
from tidings.cli.tail import as_json, follow, payload_text

Invoke = Callable[..., Result]


def tail_json(cli: Invoke, *args: str) -> list[dict[str, Any]]:
    result = cli("tail", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_published_messages_are_tailed_with_key_headers_and_payload(
    cli: Invoke, sqlite_url: str
) -> None:
    first = cli(
        "publish", "user.signed_up", '{"user_id": 1}', "--url", sqlite_url,
        "--key", "user-1", "--header", "tenant=a", "-H", "trace=x=y", "--json",
    )  # fmt: skip
    second = cli("publish", "user.deleted", '{"user_id": 2}', "--url", sqlite_url, "--json")
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output

    seen = tail_json(cli, "user.*", "--url", sqlite_url, "--count", "2")

    published = [msgspec.json.decode(r.stdout) for r in (first, second)]
    assert [m["id"] for m in seen] == [p["id"] for p in published]
    assert seen[0]["type"] == "user.signed_up"
    assert seen[0]["key"] == "user-1"
    assert seen[0]["headers"] == {"tenant": "a", "trace": "x=y"}
    assert seen[0]["data"] == {"user_id": 1}
    assert seen[1]["data"] == {"user_id": 2}
    assert seen[1]["key"] is None


def test_tail_shows_only_the_topic_asked_for(cli: Invoke, sqlite_url: str) -> None:
    for topic in ("order.placed", "user.signed_up", "order.paid"):
        assert cli("publish", topic, "{}", "--url", sqlite_url).exit_code == 0

    seen = tail_json(cli, "order.paid", "--url", sqlite_url, "--count", "1")

    assert [m["type"] for m in seen] == ["order.paid"]


def test_a_named_group_does_not_see_what_it_already_acknowledged(
    cli: Invoke, sqlite_url: str
) -> None:
    for n in (1, 2):
        assert cli("publish", "job.queued", f'{{"n": {n}}}', "--url", sqlite_url).exit_code == 0
    assert tail_json(cli, "job.queued", "--url", sqlite_url, "--group", "g", "--count", "1")
    assert cli("publish", "job.queued", '{"n": 3}', "--url", sqlite_url).exit_code == 0

    seen = tail_json(cli, "job.queued", "--url", sqlite_url, "--group", "g", "--count", "2")

    assert [m["data"]["n"] for m in seen] == [2, 3]


def test_tail_prints_one_readable_line_per_message(cli: Invoke, sqlite_url: str) -> None:
    cli("publish", "user.signed_up", '{"name": "Ada"}', "--url", sqlite_url, "--key", "k1")

    result = cli("tail", "user.signed_up", "--url", sqlite_url, "--count", "1")

    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert "user.signed_up" in line
    assert "key=k1" in line
    assert '{"name": "Ada"}' in line
    assert "following user.signed_up as group tidings-tail-" in result.stderr


def test_publish_reads_the_payload_from_stdin(cli: Invoke, sqlite_url: str) -> None:
    result = cli("publish", "note.added", "-", "--url", sqlite_url, input='{"text": "hi"}\n')
    assert result.exit_code == 0, result.output

    seen = tail_json(cli, "note.added", "--url", sqlite_url, "--count", "1")

    assert seen[0]["data"] == {"text": "hi"}


def test_publish_refuses_bad_json_and_bad_headers(cli: Invoke, sqlite_url: str) -> None:
    bad_json = cli("publish", "t", "{not json", "--url", sqlite_url)
    bad_header = cli("publish", "t", "{}", "--url", sqlite_url, "--header", "novalue")

    assert bad_json.exit_code == 2
    assert "not valid JSON" in bad_json.output
    assert bad_header.exit_code == 2
    assert "NAME=VALUE" in bad_header.output


def test_publish_to_an_unreachable_broker_fails_without_the_password(cli: Invoke) -> None:
    result = cli(
        "publish", "t", "{}", "--url", "amqp://guest:s3cret@127.0.0.1:1/?connect_timeout=1"
    )

    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert "s3cret" not in result.output
    assert "***" in result.stderr


async def test_publish_and_tail_on_a_broker(cli: Invoke, broker_url: str) -> None:
    topic, group = "cli.published", f"tail-{uuid.uuid4().hex[:8]}"
    shown: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    def show(delivery: Delivery) -> None:
        shown.append(msgspec.json.decode(msgspec.json.encode(as_json(delivery))))
        arrived.set()

    async with Bus(broker_url) as bus:
        # Subscribing first: on brokers without history for new groups (RabbitMQ) a message
        # published before the group exists never reaches it.
        following = asyncio.create_task(
            follow(bus.transport.subscribe(topic, group=group), show, 2)
        )
        await bus.publish(Message(topic, b'{"marker": true}'))
        async with asyncio.timeout(30):
            await arrived.wait()  # the group exists on the broker now
            published = await asyncio.to_thread(
                cli, "publish", topic, '{"n": 1}', "--url", broker_url, "--key", "a",
                "-H", "h=v", "--json",
            )  # fmt: skip
            assert published.exit_code == 0, published.output
            await following

    sent = msgspec.json.decode(published.stdout)
    assert shown[0]["data"] == {"marker": True}
    assert (shown[1]["id"], shown[1]["key"], shown[1]["data"]) == (sent["id"], "a", {"n": 1})
    assert shown[1]["headers"] == {"h": "v"}


async def test_a_running_tail_shows_what_another_process_publishes(sqlite_url: str) -> None:
    cli = (sys.executable, "-m", "tidings.cli")
    tail = await asyncio.create_subprocess_exec(
        *cli, "tail", "live.topic", "--url", sqlite_url, "--count", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stdout is not None
    assert tail.stderr is not None
    try:
        async with asyncio.timeout(30):
            assert b"following live.topic" in await tail.stderr.readline()
            publisher = await asyncio.create_subprocess_exec(
                *cli, "publish", "live.topic", '{"n": 7}', "--url", sqlite_url,
                stdout=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            assert await publisher.wait() == 0
            line = await tail.stdout.readline()
            assert await tail.wait() == 0
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
    assert b"live.topic" in line
    assert b'{"n": 7}' in line


def test_tail_shows_an_unreadable_message_as_it_came() -> None:
    """A message whose envelope could not be read (its data Malformed) shows its raw payload."""
    assert payload_text(Malformed(b'{"n": 1}', "headers are not JSON")) == b'{"n": 1}'
