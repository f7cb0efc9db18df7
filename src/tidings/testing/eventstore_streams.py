"""Event store suite cases beyond appending: following the log, snapshots, stream metadata,
tombstones, checkpoints and closing (see :mod:`tidings.testing.eventstore_suite`)."""

from __future__ import annotations

import asyncio

import pytest

from tidings.errors import ClosedError, NotFound
from tidings.eventsourcing.store import (
    ANY,
    NO_STREAM,
    EventStore,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamDeleted,
)

__all__ = ["GUARD", "StreamCases", "collect", "new_events", "versions"]

GUARD = 20.0
"""Seconds after which a wait that should have ended fails the test (a hang guard, not a goal)."""


def new_events(count: int, type: str = "thing.happened", start: int = 0) -> list[NewEvent]:
    """``count`` events with payloads ``{"n": start}``, ``{"n": start + 1}``…"""
    return [NewEvent(type, b'{"n":%d}' % (start + i)) for i in range(count)]


async def collect(events: object) -> list[RecordedEvent]:
    return [event async for event in events]  # type: ignore[attr-defined]


def versions(events: list[RecordedEvent]) -> list[int]:
    return [event.version for event in events]


class StreamCases:
    """Following the log, snapshots, metadata, tombstones, checkpoints, closing."""

    # -- subscriptions --------------------------------------------------------------------

    async def test_subscription_hands_over_from_catch_up_to_live(self, store: EventStore) -> None:
        await store.append("before", new_events(600))  # more than one page of catch-up
        live = 10 * 20
        total = 600 + live
        received: list[RecordedEvent] = []
        all_in = asyncio.Event()

        async def subscriber() -> None:
            async for event in store.subscribe(after=0):
                received.append(event)
                if len(received) == total:
                    all_in.set()
                    return

        async def writer(n: int) -> None:
            for i in range(20):
                await store.append(f"live-{n}", new_events(1, start=i))
                await asyncio.sleep(0)

        async with asyncio.timeout(GUARD):
            task = asyncio.create_task(subscriber())
            await asyncio.gather(*(writer(n) for n in range(10)))
            await all_in.wait()
            await task

        assert [e.position for e in received] == list(range(1, total + 1))
        assert len({e.id for e in received}) == total

    async def test_subscription_starts_after_a_position(self, store: EventStore) -> None:
        await store.append("s", new_events(5))
        received: list[int] = []
        async with asyncio.timeout(GUARD):
            async for event in store.subscribe(after=3):
                received.append(event.position)
                if event.position == 5:
                    break
        assert received == [4, 5]

    async def test_subscription_ends_when_the_store_closes(self, store: EventStore) -> None:
        await store.append("s", new_events(1))
        first = asyncio.Event()

        async def subscriber() -> int:
            count = 0
            async for _ in store.subscribe():
                count += 1
                first.set()
            return count

        async with asyncio.timeout(GUARD):
            task = asyncio.create_task(subscriber())
            await first.wait()
            await store.aclose()
            assert await task == 1

    async def test_wait_for_new_wakes_up_on_append(self, store: EventStore) -> None:
        await store.append("s", new_events(1))
        async with asyncio.timeout(GUARD):
            waiter = asyncio.create_task(store.wait_for_new(1, GUARD * 2))
            await asyncio.sleep(0)  # yield: the waiter parks before the append
            await store.append("s", new_events(1))
            await waiter
            await store.wait_for_new(0, GUARD * 2)  # already past: returns at once

    # -- snapshots, metadata, tombstones, checkpoints -------------------------------------

    async def test_snapshot_round_trip_keeps_the_newest(self, store: EventStore) -> None:
        assert await store.load_snapshot("s") is None
        await store.append("s", new_events(10))
        newer = Snapshot("s", 10, "Account", b'{"balance":10}', schema_version=2)
        await store.save_snapshot(Snapshot("s", 5, "Account", b'{"balance":5}'))
        await store.save_snapshot(newer)
        await store.save_snapshot(Snapshot("s", 7, "Account", b'{"balance":7}'))

        assert await store.load_snapshot("s") == newer

    async def test_stream_metadata_and_listing(self, store: EventStore) -> None:
        await store.append("a", new_events(2))
        await store.append("b", new_events(1))
        await store.set_stream_metadata("a", {"owner": "Jane", "max_age": 3600})

        info = await store.stream_info("a")
        assert (info.name, info.version, dict(info.metadata), info.deleted) == (
            "a",
            2,
            {"owner": "Jane", "max_age": 3600},
            False,
        )
        assert [(s.name, s.version) for s in await store.streams()] == [("a", 2), ("b", 1)]
        with pytest.raises(NotFound):
            await store.stream_info("never-written")
        with pytest.raises(NotFound):
            await store.set_stream_metadata("never-written", {})

    async def test_a_deleted_stream_is_erased_and_its_name_is_taken(
        self, store: EventStore
    ) -> None:
        await store.append("keep", new_events(1))
        await store.append("gone", new_events(3))
        await store.set_stream_metadata("gone", {"email": "jane@example.com"})
        await store.save_snapshot(Snapshot("gone", 3, "Account", b'{"email":"jane@example.com"}'))

        await store.delete_stream("gone")
        await store.delete_stream("gone")  # idempotent

        assert await collect(store.read("gone")) == []
        assert [e.stream for e in await collect(store.read_all())] == ["keep"]
        assert await store.head_position() == 1  # the erased events were the last ones
        info = await store.stream_info("gone")
        assert (info.version, dict(info.metadata), info.deleted) == (3, {}, True)
        assert await store.load_snapshot("gone") is None
        await store.save_snapshot(Snapshot("gone", 3, "Account", b"{}"))
        assert await store.load_snapshot("gone") is None
        for expected in (ANY, NO_STREAM, 3):
            with pytest.raises(StreamDeleted, match="cannot be used again"):
                await store.append("gone", new_events(1), expected_version=expected)
        with pytest.raises(StreamDeleted):
            await store.set_stream_metadata("gone", {})
        with pytest.raises(NotFound):
            await store.delete_stream("never-written")

        await store.append("keep", new_events(1))
        assert [e.position for e in await collect(store.read_all())] == [1, 5]

    async def test_checkpoints(self, store: EventStore) -> None:
        assert await store.get_checkpoint("projection") == 0
        await store.set_checkpoint("projection", 42)
        await store.set_checkpoint("other", 7)
        await store.set_checkpoint("projection", 43)
        assert await store.get_checkpoint("projection") == 43
        assert await store.get_checkpoint("other") == 7

    async def test_a_transaction_commits_or_rolls_back_the_checkpoint(
        self, store: EventStore
    ) -> None:
        async with store.transaction() as tx:
            await tx.set_checkpoint("projection", 5)
            assert await tx.get_checkpoint("projection") == 5
        assert await store.get_checkpoint("projection") == 5

        async def failing() -> None:
            async with store.transaction() as tx:
                await tx.set_checkpoint("projection", 9)
                raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError, match="handler failed"):
            await failing()
        assert await store.get_checkpoint("projection") == 5

    async def test_appends_during_a_transaction_complete(self, store: EventStore) -> None:
        async with asyncio.timeout(GUARD):
            async with store.transaction() as tx:
                append = asyncio.create_task(store.append("s", new_events(1)))
                await asyncio.sleep(0)  # yield: the append starts while the transaction runs
                await tx.set_checkpoint("projection", 1)
            assert await append == 1
        assert await store.get_checkpoint("projection") == 1

    # -- lifecycle ------------------------------------------------------------------------

    async def test_a_closed_store_refuses_every_call(self, store: EventStore) -> None:
        await store.append("s", new_events(1))
        await store.aclose()
        await store.aclose()  # idempotent
        with pytest.raises(ClosedError):
            await store.append("s", new_events(1))
        with pytest.raises(ClosedError):
            await collect(store.read("s"))
        with pytest.raises(ClosedError):
            await store.head_position()
        with pytest.raises(ClosedError):
            store.transaction()
