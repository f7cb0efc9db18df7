"""The pytest plugin runs an application's tests on the transport its options name: in memory by
default, on a broker with ``--tidings-url`` or ``TIDINGS_TEST_URL``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.testing.plugin import URL_VARIABLE
from tidings.transports import from_url

USERS_TEST = """
import asyncio
import os
from dataclasses import dataclass

import tidings


@tidings.event("plugin.greeted")
@dataclass(frozen=True)
class Greeted:
    name: str


async def test_a_handler_sees_what_is_published(tidings_bus, tidings_url):
    assert type(tidings_bus.transport).__name__ == os.environ["EXPECTED_TRANSPORT"]
    assert tidings_url.split(":")[0] == os.environ["EXPECTED_SCHEME"]
    seen = asyncio.Event()
    tidings_bus.subscribe(Greeted, lambda e: seen.set(), group="plugin-test")
    await tidings_bus.publish(Greeted("ada"))
    await asyncio.wait_for(seen.wait(), 30)
"""


def _pytest(tmp_path: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run USERS_TEST in a pytest of its own, with ``env`` instead of any TIDINGS_TEST_URL."""
    (tmp_path / "test_users.py").write_text(USERS_TEST)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    inherited = {k: v for k, v in os.environ.items() if k != URL_VARIABLE}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=tmp_path,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )


def test_the_bus_fixture_runs_in_memory_by_default(tmp_path: Path) -> None:
    run = _pytest(tmp_path, EXPECTED_TRANSPORT="MemoryTransport", EXPECTED_SCHEME="memory")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.timeout(300)
def test_the_bus_fixture_runs_on_the_broker_named_by_option_or_variable(
    tmp_path: Path, broker_url: str
) -> None:
    expected = {
        "EXPECTED_SCHEME": broker_url.split(":")[0],
        "EXPECTED_TRANSPORT": type(from_url(broker_url)).__name__,
    }
    by_option = _pytest(tmp_path, f"--tidings-url={broker_url}", **expected)
    assert by_option.returncode == 0, by_option.stdout + by_option.stderr
    by_variable = _pytest(tmp_path, **expected, **{URL_VARIABLE: broker_url})
    assert by_variable.returncode == 0, by_variable.stdout + by_variable.stderr
