"""The topic rule of :mod:`tidings.topics`, as the bus applies it on every path."""

from __future__ import annotations

import pytest

import tidings
from tidings import Message
from tidings.topics import validate_pattern, validate_topic


@pytest.mark.parametrize("topic", ["tenant.*", "tenant.>", "orders.#", "a..b", "a b", ""])
def test_publish_refuses_what_is_not_a_topic(topic: str) -> None:
    with pytest.raises(ValueError, match=r"topic|pattern"):
        validate_topic(topic)


@pytest.mark.parametrize("pattern", ["orders.#", "orders.a#", "a..b", "a.>.b", "a.b*", "a\tb"])
def test_subscribe_refuses_malformed_patterns(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"topic|token|wildcard"):
        validate_pattern(pattern)


@pytest.mark.parametrize("topic", ["orders.placed", "orders.*", "orders.>", ">", "a-b_c.d:e"])
def test_subscribe_takes_topics_and_patterns(topic: str) -> None:
    assert validate_pattern(topic) == topic


async def test_the_bus_refuses_a_pattern_on_every_publish_path() -> None:
    bus = tidings.Bus()
    bus.subscribe("tenant.*", lambda message: None)
    async with bus:
        with pytest.raises(ValueError, match="cannot publish to the pattern"):
            await bus.publish(Message("tenant.*", b"{}"))
        with pytest.raises(ValueError, match="cannot publish to the pattern"):
            await bus.publish_and_wait(Message("tenant.*", b"{}"))
        with pytest.raises(ValueError, match="cannot publish to the pattern"):
            bus.publish_nowait(Message("x", b"{}"), topic="tenant.*")
        with pytest.raises(ValueError, match="cannot publish to the pattern"):
            await bus.publish_many([Message("x", b"{}")], topic="tenant.>")
        result = await bus.publish_and_wait(Message("tenant.a", b"{}"))
        assert len(result.outcomes) == 1
