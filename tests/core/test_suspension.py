"""Which async handlers can suspend: read from their code, checked on this interpreter.

The bus runs an ``async def`` that cannot suspend inline (no Task); one that can runs in a Task.
Each form below is run for real: the classification must agree with what the coroutine does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from tidings.handlers import describe


async def _tick() -> None:
    await asyncio.sleep(0)


async def _ticks() -> AsyncIterator[int]:
    yield 1
    await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def _scope() -> AsyncIterator[None]:
    await asyncio.sleep(0)
    yield


async def no_await(event: object) -> None:
    _ = [event] * 2


async def nested_def_awaits_but_is_not_called(event: object) -> None:
    async def inner() -> None:
        await asyncio.sleep(0)

    _ = inner


async def plain_await(event: object) -> None:
    await _tick()


async def async_for(event: object) -> None:
    async for _ in _ticks():
        pass


async def async_with(event: object) -> None:
    async with _scope():
        pass


async def _one() -> int:
    await asyncio.sleep(0)
    return 1


async def await_in_comprehension(event: object) -> None:
    _ = [await _one() for _ in range(2)]


async def async_comprehension(event: object) -> None:
    _ = [x async for x in _ticks()]


async def await_in_branch_not_taken(event: object) -> None:
    if event is None:
        await _tick()


CANNOT = [no_await, nested_def_awaits_but_is_not_called]
CAN = [plain_await, async_for, async_with, await_in_comprehension, async_comprehension]


def _suspends(func: Callable[[object], Coroutine[Any, Any, None]], event: object) -> bool:
    """Run ``func(event)`` one step: whether it yielded to the event loop."""

    async def main() -> bool:
        coro = func(event)
        try:
            coro.send(None)
        except StopIteration:
            return False
        coro.close()
        return True

    return asyncio.run(main())


@pytest.mark.parametrize("func", CANNOT, ids=lambda f: f.__name__)
def test_a_body_without_suspension_points_runs_to_the_end_in_one_step(
    func: Callable[[object], Coroutine[Any, Any, None]],
) -> None:
    assert not describe(func).may_suspend
    assert not _suspends(func, object())


@pytest.mark.parametrize("func", CAN, ids=lambda f: f.__name__)
def test_await_async_for_and_async_with_are_suspension_points(
    func: Callable[[object], Coroutine[Any, Any, None]],
) -> None:
    assert describe(func).may_suspend
    assert _suspends(func, object())


def test_an_await_on_any_path_counts_even_when_not_taken() -> None:
    assert describe(await_in_branch_not_taken).may_suspend
    assert _suspends(await_in_branch_not_taken, None)


def test_a_callable_object_is_read_through_its_call_method() -> None:
    class Quiet:
        async def __call__(self, event: object) -> None:
            pass

    class Busy:
        async def __call__(self, event: object) -> None:
            await _tick()

    assert not describe(Quiet()).may_suspend
    assert describe(Busy()).may_suspend


def test_a_decorated_handler_is_assumed_to_suspend() -> None:
    """A wrapper's own code says nothing about what it wraps: assume the worst."""

    @functools.wraps(no_await)
    async def wrapper(event: object) -> None:
        await no_await(event)

    assert describe(wrapper).may_suspend
