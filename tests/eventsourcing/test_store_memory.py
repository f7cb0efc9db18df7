"""The in-memory event store passes the conformance suite; store URLs pick backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tidings.eventsourcing.backends.memory import MemoryEventStore
from tidings.eventsourcing.store import EventStore
from tidings.testing.eventstore_suite import EventStoreSuite, new_events


class TestMemoryEventStore(EventStoreSuite):
    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        async with EventStore("memory://") as store:
            yield store


def test_the_default_store_is_in_memory() -> None:
    assert isinstance(EventStore().backend, MemoryEventStore)


def test_a_backend_can_be_passed_directly() -> None:
    backend = MemoryEventStore()
    assert EventStore(backend).backend is backend


@pytest.mark.parametrize("url", ["kafka://127.0.0.1:9092", "events.db"])
def test_unknown_urls_are_refused_with_the_known_schemes(url: str) -> None:
    with pytest.raises(ValueError, match=r"memory://, sqlite://"):
        EventStore(url)


async def test_a_store_opens_on_first_use() -> None:
    store = EventStore("memory://")
    assert await store.append("s", new_events(1)) == 1
    assert [e.version async for e in EventStore("memory://").read("s")] == []
    await store.aclose()


async def test_append_takes_new_events_only() -> None:
    async with EventStore() as store:
        with pytest.raises(TypeError, match="NewEvent"):
            await store.append("s", [{"type": "x"}])  # type: ignore[list-item]
