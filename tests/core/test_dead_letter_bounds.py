"""The in-memory dead-letter store keeps at most ``max_letters`` and counts what it evicted."""

from __future__ import annotations

import logging

import pytest
from events import UserSignedUp

from tidings import Bus, Message, Retry
from tidings.dead_letters import DeadLetter, MemoryDeadLetterStore, dead_letter_from
from tidings.testing import FakeClock


def letter(n: int) -> DeadLetter:
    message = Message("t", None)
    error = ValueError(f"failure {n}")
    return dead_letter_from(
        message, topic="t", group="g", data=b"", error=error, attempts=1, failed_at=float(n)
    )


async def test_a_full_store_evicts_the_oldest_and_counts_them() -> None:
    store = MemoryDeadLetterStore(max_letters=5)
    letters = [letter(n) for n in range(15)]
    for each in letters:
        await store.add(each)
    assert await store.list(limit=100) == letters[-5:]
    assert store.evicted == 10


async def test_the_default_bound_is_ten_thousand() -> None:
    store = MemoryDeadLetterStore()
    assert store.max_letters == 10_000
    for n in range(10_010):
        await store.add(letter(n))
    assert len(await store.list(limit=20_000)) == 10_000
    assert store.evicted == 10


async def test_removing_letters_makes_room_without_evicting() -> None:
    store = MemoryDeadLetterStore(max_letters=2)
    first, second, third = letter(1), letter(2), letter(3)
    await store.add(first)
    await store.add(second)
    await store.remove([first.id])
    await store.add(third)
    assert await store.list() == [second, third]
    assert store.evicted == 0


async def test_evictions_are_logged_at_most_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    store = MemoryDeadLetterStore(max_letters=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tidings.dead_letters"):
        for n in range(3 + 500):
            await store.add(letter(n))
        assert len(caplog.records) == 1
        clock.advance(1.0)
        await store.add(letter(503))
    first, second = (record.getMessage() for record in caplog.records)
    assert "evicted 1 " in first
    assert "evicted 500 " in second  # the 499 not logged, and this one
    assert "501 in all" in second


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_letters"):
        MemoryDeadLetterStore(max_letters=0)


async def test_a_bus_keeps_dead_letters_within_the_bound_it_is_given() -> None:
    store = MemoryDeadLetterStore(max_letters=2)
    bus = Bus(dead_letters=store)

    @bus.subscribe(UserSignedUp, retry=Retry(max_attempts=1))
    def reject(event: UserSignedUp) -> None:
        raise ValueError(f"user {event.user_id}")

    for user_id in range(3):
        await bus.publish_and_wait(UserSignedUp(user_id, "x"))
    letters = await bus.dead_letters.list()
    assert [each.error_message for each in letters] == ["user 1", "user 2"]
    assert store.evicted == 1
