"""pytest fixtures for applications built on tidings (registered through the pytest11 entry point).

* ``bus``: a running in-memory ``Bus``, drained and closed after the test.
* ``inline_bus``: a ``Bus(inline=True)``: publish runs the handlers before returning, in
  subscription order (deterministic).
* ``recorder``: a :class:`~tidings.testing.Recorder` on ``bus``.
* ``fake_clock``: a :class:`~tidings.testing.FakeClock` (give it to ``Bus(clock=...)``).

The asynchronous fixtures need pytest-asyncio; without it only ``fake_clock`` is provided.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from tidings.bus import Bus
from tidings.testing.clock import FakeClock
from tidings.testing.recorder import Recorder

__all__ = ["fake_clock"]


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    __all__ += ["bus", "inline_bus", "recorder"]

    @pytest_asyncio.fixture
    async def bus() -> AsyncIterator[Bus]:
        async with Bus() as running:
            yield running

    @pytest_asyncio.fixture
    async def inline_bus() -> AsyncIterator[Bus]:
        async with Bus(inline=True) as running:
            yield running

    @pytest_asyncio.fixture
    async def recorder(bus: Bus) -> Recorder:
        return Recorder(bus)
