"""Faults in handlers: fail, be slow, hang. Each is middleware and a handler wrapper at once.

As middleware (``bus.subscribe(..., middleware=[fault])``) a fault runs before the rest of the
chain, once per message. ``fault.wrap(handler)`` wraps a user's function instead, keeping its
signature, so it works for batch handlers (``list[Event]``), which take no middleware: there the
fault strikes once per call, for the whole batch.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.message import Message
from tidings.middleware import Handler
from tidings.testing.faults.triggers import Chance, Times, Trigger

__all__ = [
    "HandlerFault",
    "InjectedFault",
    "fail",
    "fail_times",
    "fail_with_probability",
    "hang",
    "slow",
]


class InjectedFault(Exception):
    """The error a failing fault raises unless told another."""


class HandlerFault:
    """Runs ``act`` before the handler on every call its trigger strikes (every call without
    one). ``calls`` counts the calls, ``struck`` keeps the argument of each call struck, in
    order: a Message as middleware, the event or the batch for a wrapped handler."""

    def __init__(
        self, name: str, act: Callable[[int], Awaitable[None]], when: Trigger | None = None
    ) -> None:
        self.name = name
        self.when = when
        self.calls = 0
        self.struck: list[Any] = []
        self._act = act

    async def _before(self, argument: Any) -> None:
        self.calls += 1
        if self.when is None or self.when.strikes():
            self.struck.append(argument)
            await self._act(len(self.struck))

    def __call__(self, handler: Handler) -> Handler:
        async def faulty(message: Message) -> None:
            await self._before(message)
            await handler(message)

        return faulty

    def wrap(self, func: Callable[[Any], Any]) -> Callable[[Any], Awaitable[None]]:
        """``func`` (``def`` or ``async def``, taking an event, a Message or a batch) with this
        fault before each call; the bus sees the same parameter and annotation."""

        @functools.wraps(func)
        async def faulty(argument: Any) -> None:
            await self._before(argument)
            result = func(argument)
            if inspect.isawaitable(result):
                await result

        return faulty

    def __repr__(self) -> str:
        return f"<{self.name} when={self.when!r}: {len(self.struck)} of {self.calls} calls>"


def fail_times(n: int, exc: type[BaseException] = InjectedFault) -> HandlerFault:
    """Raise ``exc`` (built with a message) on the first ``n`` calls; then let calls through."""
    return fail(exc, Times(n))


def fail_with_probability(
    p: float, *, seed: int = 0, exc: type[BaseException] = InjectedFault
) -> HandlerFault:
    """Raise ``exc`` on each call with probability ``p`` (seeded: see :class:`Chance`)."""
    return fail(exc, Chance(p, seed=seed))


def fail(exc: type[BaseException], when: Trigger | None = None) -> HandlerFault:
    """Raise ``exc`` whenever ``when`` strikes (on every call without it)."""

    async def raise_(k: int) -> None:
        raise exc(f"injected failure {k}")

    return HandlerFault(f"fail({exc.__name__})", raise_, when)


def slow(seconds: float, when: Trigger | None = None) -> HandlerFault:
    """Wait ``seconds`` before calling the handler (on the calls ``when`` strikes)."""

    async def wait(_: int) -> None:
        await asyncio.sleep(seconds)

    return HandlerFault(f"slow({seconds:g})", wait, when)


def hang(when: Trigger | None = None) -> HandlerFault:
    """Never return, until cancelled (a route's ``timeout`` does that), on the calls ``when``
    strikes."""

    async def forever(_: int) -> None:
        await asyncio.get_running_loop().create_future()

    return HandlerFault("hang", forever, when)
