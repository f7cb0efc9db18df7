"""A Redis Streams worker killed with SIGKILL three times loses no message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from brokers import delete_prefix
from test_redis import unique_prefix

from tidings.testing.crash import crash_test


@pytest.fixture
async def crash_url(redis_url: str) -> AsyncIterator[str]:
    """A URL with a key prefix of this test only (deleted afterwards); what a killed worker
    held is claimed by its successor after one second."""
    prefix = unique_prefix()
    yield f"{redis_url}?prefix={prefix}&lease=1"
    await delete_prefix(redis_url, prefix)


async def test_sigkilled_worker_loses_nothing(crash_url: str, tmp_path: Path) -> None:
    report = await crash_test(crash_url, effects=tmp_path / "effects.db", seed=7)
    assert report.distinct == report.messages == 10_000, "every message handled at least once"
    assert report.effects == report.messages, "with dedupe, each side effect exactly once"
    assert report.attempts >= report.messages
