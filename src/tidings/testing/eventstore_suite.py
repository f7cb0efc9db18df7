"""The conformance suite every event store backend passes.

Subclass it in a test module and provide a ``store`` fixture yielding a fresh, started
:class:`~tidings.eventsourcing.store.EventStore`::

    class TestSqliteStore(EventStoreSuite):
        @pytest.fixture
        async def store(self, tmp_path):
            async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
                yield store

Every test method is a coroutine (pytest-asyncio in auto mode runs them). Waits are bounded by
``asyncio.timeout`` so a store that loses a wake-up fails instead of hanging; nothing here
sleeps to synchronise or asserts on timing.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import pytest

from tidings.errors import ConcurrencyError, NotFound
from tidings.eventsourcing.backends.commits import MAX_EVENTS_PER_COMMIT
from tidings.eventsourcing.store import (
    ANY,
    NO_STREAM,
    EventStore,
    NewEvent,
)
from tidings.testing.eventstore_streams import GUARD, StreamCases, collect, new_events, versions

__all__ = ["EventStoreSuite", "new_events"]


class EventStoreSuite(StreamCases):
    """Behaviour every backend must show; see the module docstring for how to run it."""

    # -- append and read ------------------------------------------------------------------

    async def test_append_then_read_returns_the_events_as_stored(self, store: EventStore) -> None:
        first = [
            NewEvent("account.opened", b'{"owner":"Jane"}', metadata={"correlation": "c-1"}),
            NewEvent("money.deposited", b'{"amount":10}', schema_version=2),
        ]
        assert await store.append("account-1", first, expected_version=NO_STREAM) == 2
        assert await store.append("account-1", new_events(1), expected_version=2) == 3

        events = await collect(store.read("account-1"))

        assert versions(events) == [1, 2, 3]
        assert [e.stream for e in events] == ["account-1"] * 3
        assert [(e.type, e.data, e.id) for e in events[:2]] == [
            (n.type, n.data, n.id) for n in first
        ]
        assert events[0].metadata == {"correlation": "c-1"}
        assert events[1].schema_version == 2
        assert events[0].position < events[1].position < events[2].position
        assert all(isinstance(e.recorded_at, datetime) and e.recorded_at.tzinfo for e in events)

    async def test_read_from_version_backwards_and_limit(self, store: EventStore) -> None:
        await store.append("s", new_events(3))
        await store.append("s", new_events(4, start=3))  # versions 4-7, one commit

        assert versions(await collect(store.read("s", from_version=5))) == [5, 6, 7]
        assert versions(await collect(store.read("s", from_version=2, limit=3))) == [2, 3, 4]
        assert versions(await collect(store.read("s", backwards=True))) == [7, 6, 5, 4, 3, 2, 1]
        backwards = store.read("s", from_version=5, backwards=True, limit=3)
        assert versions(await collect(backwards)) == [5, 4, 3]
        assert versions(await collect(store.read("s", from_version=8))) == []
        assert await collect(store.read("never-written")) == []

    async def test_appends_larger_than_one_commit_row(self, store: EventStore) -> None:
        count = MAX_EVENTS_PER_COMMIT * 2 + 7
        await store.append("big", new_events(count))

        events = await collect(store.read("big"))
        middle = await collect(store.read("big", from_version=MAX_EVENTS_PER_COMMIT - 1, limit=4))
        after = await collect(store.read_all(after=MAX_EVENTS_PER_COMMIT + 3, limit=2))

        assert versions(events) == list(range(1, count + 1))
        assert [e.data for e in events[-2:]] == [
            b'{"n":%d}' % (count - 2),
            b'{"n":%d}' % (count - 1),
        ]
        assert versions(middle) == list(range(MAX_EVENTS_PER_COMMIT - 1, MAX_EVENTS_PER_COMMIT + 3))
        assert [e.position for e in after] == [MAX_EVENTS_PER_COMMIT + 4, MAX_EVENTS_PER_COMMIT + 5]

    async def test_read_all_follows_append_order_across_streams(self, store: EventStore) -> None:
        await store.append("a", new_events(2))
        await store.append("b", new_events(1))
        await store.append("a", new_events(1))

        events = await collect(store.read_all())

        assert [(e.stream, e.version, e.position) for e in events] == [
            ("a", 1, 1),
            ("a", 2, 2),
            ("b", 1, 3),
            ("a", 3, 4),
        ]
        assert [e.position for e in await collect(store.read_all(after=2, limit=1))] == [3]
        assert await store.head_position() == 4

    async def test_an_empty_append_only_checks_the_version(self, store: EventStore) -> None:
        assert await store.append("s", [], expected_version=NO_STREAM) == 0
        await store.append("s", new_events(2))
        assert await store.append("s", [], expected_version=2) == 2
        with pytest.raises(ConcurrencyError):
            await store.append("s", [], expected_version=1)
        assert await store.head_position() == 2

    # -- optimistic concurrency -----------------------------------------------------------

    async def test_no_stream_conflicts_with_an_existing_stream(self, store: EventStore) -> None:
        await store.append("s", new_events(2))
        with pytest.raises(ConcurrencyError) as raised:
            await store.append("s", new_events(1), expected_version=NO_STREAM)
        assert (raised.value.stream, raised.value.expected, raised.value.actual) == (
            "s",
            NO_STREAM,
            2,
        )

    async def test_a_stale_or_future_version_conflicts(self, store: EventStore) -> None:
        await store.append("s", new_events(3))
        for expected in (2, 4):
            with pytest.raises(ConcurrencyError) as raised:
                await store.append("s", new_events(1), expected_version=expected)
            assert (raised.value.expected, raised.value.actual) == (expected, 3)
        assert versions(await collect(store.read("s"))) == [1, 2, 3]

    async def test_a_version_on_a_missing_stream_conflicts(self, store: EventStore) -> None:
        with pytest.raises(ConcurrencyError) as raised:
            await store.append("s", new_events(1), expected_version=1)
        assert raised.value.actual is None
        assert await store.append("s", new_events(1), expected_version=0) == 1
        assert await store.append("s", new_events(1), expected_version=ANY) == 2
        assert await store.append("t", new_events(1), expected_version=ANY) == 1

    async def test_invalid_expected_versions_are_refused(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="expected_version"):
            await store.append("s", new_events(1), expected_version=-1)
        with pytest.raises(ValueError, match="expected_version"):
            await store.append("s", new_events(1), expected_version="latest")  # type: ignore[arg-type]

    async def test_concurrent_appends_lose_and_duplicate_nothing(self, store: EventStore) -> None:
        streams = [f"stream-{i}" for i in range(10)]
        rng = random.Random(7)

        async def writer(task: int) -> None:
            stream = streams[task % len(streams)]
            events = new_events(rng.randint(1, 3), type=f"task.{task}")
            while True:  # the optimistic loop every caller of append writes
                try:
                    info = await store.stream_info(stream)
                    current = info.version
                except NotFound:
                    current = 0
                try:
                    await store.append(stream, events, expected_version=current)
                    return
                except ConcurrencyError:
                    continue

        await asyncio.gather(*(writer(task) for task in range(100)))

        total = 0
        for stream in streams:
            events = await collect(store.read(stream))
            assert versions(events) == list(range(1, len(events) + 1))
            total += len(events)
        everything = await collect(store.read_all())
        assert len(everything) == total
        assert len({e.id for e in everything}) == total
        assert {e.type for e in everything} == {f"task.{task}" for task in range(100)}
        assert [e.position for e in everything] == list(range(1, total + 1))

    async def test_appends_made_together_apply_in_call_order(self, store: EventStore) -> None:
        versions_returned = await asyncio.gather(
            *(store.append("s", new_events(1), expected_version=v) for v in range(5))
        )
        assert versions_returned == [1, 2, 3, 4, 5]

    async def test_a_conflict_refuses_only_its_own_append(self, store: EventStore) -> None:
        outcomes = await asyncio.gather(
            store.append("s", new_events(2), expected_version=NO_STREAM),
            store.append("s", new_events(1), expected_version=NO_STREAM),
            store.append("t", new_events(1), expected_version=NO_STREAM),
            return_exceptions=True,
        )
        assert outcomes[0] == 2
        assert isinstance(outcomes[1], ConcurrencyError)
        assert outcomes[2] == 1
        assert [(e.stream, e.position) for e in await collect(store.read_all())] == [
            ("s", 1),
            ("s", 2),
            ("t", 3),
        ]

    async def test_read_all_has_no_gaps_under_concurrent_writers(self, store: EventStore) -> None:
        writers_done = asyncio.Event()
        seen: list[int] = []

        async def writer(n: int) -> None:
            for i in range(20):
                await store.append(f"w-{n}-{i % 3}", new_events(1 + i % 3))
                await asyncio.sleep(0)  # let the reader in between appends

        async def reader() -> None:
            while True:
                finished = writers_done.is_set()
                last = seen[-1] if seen else 0
                for event in await collect(store.read_all(after=last)):
                    assert event.position == (seen[-1] if seen else 0) + 1, "a gap in read_all"
                    seen.append(event.position)
                if finished:
                    return
                await store.wait_for_new(seen[-1] if seen else 0, 0.05)

        async def write_all() -> None:
            await asyncio.gather(*(writer(n) for n in range(10)))
            writers_done.set()

        async with asyncio.timeout(GUARD):
            await asyncio.gather(reader(), write_all())

        assert seen == list(range(1, await store.head_position() + 1))
