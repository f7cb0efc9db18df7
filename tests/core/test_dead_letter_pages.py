"""``bus.dead_letters`` in pages: 100 by default, ``after=`` for the next, ``all()`` for every one.

Run on the in-memory store and on SQLite, through a bus, with more letters than one page holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tidings import Bus, Failed, Retry

FAILURES = 230


@pytest.fixture(params=["memory", "sqlite"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"
    bus = Bus(url)
    bus.subscribe("job.run", _fail, group="jobs", retry=Retry(max_attempts=1))
    async with bus:
        await _failing(
            bus, lambda: bus.publish_many([{"n": n} for n in range(FAILURES)], topic="job.run")
        )
        yield bus


async def _failing(bus: Bus, act: Callable[[], Awaitable[object]]) -> None:
    """Run ``act`` and wait until ``FAILURES`` messages were dead-lettered."""
    async with bus.outcomes() as outcomes:
        await act()
        failed = 0
        async for outcome in outcomes:
            failed += isinstance(outcome, Failed)
            if failed == FAILURES:
                return


def _fail(job: object) -> None:
    raise RuntimeError("the job failed")


async def test_a_listing_is_one_page_of_a_hundred_and_after_gives_the_next(bus: Bus) -> None:
    first = await bus.dead_letters.list()
    assert len(first) == 100
    second = await bus.dead_letters.list(after=first[-1].id)
    last = await bus.dead_letters.list(after=second[-1].id)
    assert (len(second), len(last)) == (100, FAILURES - 200)
    assert len({letter.id for letter in first + second + last}) == FAILURES


async def test_all_walks_every_letter_oldest_first(bus: Bus) -> None:
    letters = [letter async for letter in bus.dead_letters.all()]
    assert len(letters) == FAILURES
    assert letters == sorted(letters, key=lambda letter: letter.failed_at)


async def test_letters_may_be_purged_while_all_walks_them(bus: Bus) -> None:
    seen = 0
    async for letter in bus.dead_letters.all(page_size=50):
        assert await bus.dead_letters.purge([letter.id]) == 1
        seen += 1
    assert seen == FAILURES
    assert await bus.dead_letters.list() == []


async def test_replaying_everything_replays_past_the_first_page(bus: Bus) -> None:
    replayed: list[int] = []

    async def replay() -> None:
        replayed.append(await bus.dead_letters.replay())

    await _failing(bus, replay)
    assert replayed == [FAILURES]
    assert len([letter async for letter in bus.dead_letters.all()]) == FAILURES
