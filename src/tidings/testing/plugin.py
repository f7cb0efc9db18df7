"""pytest fixtures for applications built on tidings (registered through the pytest11 entry point).

Every name starts with ``tidings_``, so none can clash with an application's own fixtures:

* ``tidings_url``: the transport URL the suite runs on: ``--tidings-url URL``, else the
  ``TIDINGS_TEST_URL`` environment variable, else ``memory://`` (in process);
* ``tidings_bus``: a running ``Bus`` on that URL, closed after the test, so the same tests run in
  memory or against a real broker;
* ``tidings_inline_bus``: a ``Bus(inline=True)``, always in process: publish runs the handlers
  before returning, in subscription order (deterministic);
* ``tidings_recorder``: a :class:`~tidings.testing.Recorder` on ``tidings_bus``;
* ``tidings_clock``: a :class:`~tidings.testing.FakeClock` (give it to ``Bus(clock=...)``).

The asynchronous fixtures need pytest-asyncio; without it only ``tidings_url`` and
``tidings_clock`` are provided.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator

import pytest

from tidings.bus import Bus
from tidings.testing.clock import FakeClock
from tidings.testing.recorder import Recorder

__all__ = ["URL_VARIABLE", "pytest_addoption", "tidings_clock", "tidings_url"]

URL_VARIABLE = "TIDINGS_TEST_URL"
"""The environment variable naming the URL when ``--tidings-url`` is not given."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("tidings").addoption(
        "--tidings-url",
        metavar="URL",
        default=None,
        help=f"run the tidings_bus fixture on this transport (default: ${URL_VARIABLE}, "
        "else memory://)",
    )


@pytest.fixture(scope="session")
def tidings_url(pytestconfig: pytest.Config) -> str:
    given: str | None = pytestconfig.getoption("--tidings-url")
    return given or os.environ.get(URL_VARIABLE) or "memory://"


@pytest.fixture
def tidings_clock() -> FakeClock:
    return FakeClock()


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    __all__ += ["tidings_bus", "tidings_inline_bus", "tidings_recorder"]

    @pytest_asyncio.fixture
    async def tidings_bus(tidings_url: str) -> AsyncIterator[Bus]:
        async with Bus(tidings_url) as running:
            yield running

    @pytest_asyncio.fixture
    async def tidings_inline_bus() -> AsyncIterator[Bus]:
        async with Bus(inline=True) as running:
            yield running

    @pytest_asyncio.fixture
    async def tidings_recorder(tidings_bus: Bus) -> Recorder:
        return Recorder(tidings_bus)
