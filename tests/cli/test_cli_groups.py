"""``tidings groups``: list the consumer groups of a transport with their lag, drop one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from typer.testing import Result

from tidings import Message
from tidings.testing.receiver import Receiver, opened, prime, unique
from tidings.transports import from_url

Invoke = Callable[..., Result]

KEEPING_GROUPS = ["postgresql", "redis", "nats", "kafka", "rabbitmq"]
"""The brokers whose transports implement ``transports.Groups`` (besides SQLite)."""


async def joined(url: str, topic: str, group: str) -> None:
    """Make ``group`` exist on ``topic`` (it received a probe), with no consumer left. A probe
    published while it was joining may be left unreceived: count lag from after this."""
    async with opened(lambda: from_url(url)) as transport:
        receiver = Receiver(transport.subscribe(topic, group=group))
        await prime(transport, topic, [receiver])
        await receiver.aclose()


async def published(url: str, topic: str, count: int) -> None:
    async with opened(lambda: from_url(url)) as transport:
        await transport.publish(topic, [Message("order", b"{}") for _ in range(count)])


async def lagging(url: str, topic: str, group: str, count: int) -> None:
    """Leave ``group`` on ``topic`` with ``count`` messages it has not received (besides any
    probe left over from joining)."""
    await joined(url, topic, group)
    await published(url, topic, count)


def listed(cli: Invoke, url: str, topic: str) -> list[dict[str, Any]]:
    result = cli("groups", "list", "--url", url, "--json")
    assert result.exit_code == 0, result.output
    groups: list[dict[str, Any]] = msgspec.json.decode(result.stdout)
    return [group for group in groups if group["topic"] == topic]


def test_list_shows_each_group_with_its_lag(cli: Invoke, sqlite_url: str) -> None:
    orders, refunds = unique("orders"), unique("refunds")
    asyncio.run(lagging(sqlite_url, orders, "billing", 3))
    asyncio.run(lagging(sqlite_url, refunds, "billing", 1))

    billed = listed(cli, sqlite_url, orders) + listed(cli, sqlite_url, refunds)

    assert [(g["topic"], g["group"], g["lag"]) for g in billed] == [
        (orders, "billing", 3),
        (refunds, "billing", 1),
    ]
    assert all(g["in_flight"] == 0 and g["last_active"] > 0 for g in billed)
    table = cli("groups", "list", "--url", sqlite_url)
    assert table.exit_code == 0
    assert orders in table.stdout
    assert refunds in table.stdout


def test_drop_asks_first(cli: Invoke, sqlite_url: str) -> None:
    topic = unique("orders")
    asyncio.run(lagging(sqlite_url, topic, "billing", 2))

    refused = cli("groups", "drop", topic, "billing", "--url", sqlite_url, input="n\n")

    assert refused.exit_code == 1
    assert [g["group"] for g in listed(cli, sqlite_url, topic)] == ["billing"]
    agreed = cli("groups", "drop", topic, "billing", "--url", sqlite_url, input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert listed(cli, sqlite_url, topic) == []


def test_dropping_an_unknown_group_fails(cli: Invoke, sqlite_url: str) -> None:
    result = cli("groups", "drop", "orders", "nobody", "--url", sqlite_url, "--yes")

    assert result.exit_code == 1
    assert "no group 'nobody' on 'orders'" in result.stderr


def test_a_transport_without_groups_says_so(cli: Invoke) -> None:
    result = cli("groups", "list", "--url", "memory://")

    assert result.exit_code == 1
    assert "keeps no consumer groups" in result.stderr


@pytest.mark.parametrize("broker_url", KEEPING_GROUPS, indirect=True)
def test_list_and_drop_on_brokers(cli: Invoke, broker_url: str) -> None:
    topic, group = unique("orders"), unique("billing")  # unique on the session's Kafka
    asyncio.run(joined(broker_url, topic, group))
    (before,) = listed(cli, broker_url, topic)
    asyncio.run(published(broker_url, topic, 3))

    (after,) = listed(cli, broker_url, topic)
    assert after["group"] == group
    assert after["lag"] == before["lag"] + 3
    dropped = cli("groups", "drop", topic, group, "--url", broker_url, "--yes", "--json")
    assert dropped.exit_code == 0, dropped.output
    assert msgspec.json.decode(dropped.stdout) == {"topic": topic, "group": group, "dropped": True}
    assert listed(cli, broker_url, topic) == []
