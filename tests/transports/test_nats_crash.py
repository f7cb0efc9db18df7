"""A NATS JetStream worker killed with SIGKILL three times loses no message."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from brokers import delete_streams

from tidings.testing.crash import crash_test
from tidings.transports.nats import NatsOptions


@pytest.fixture
async def crash_url(nats_url: str) -> AsyncIterator[str]:
    """A URL on a stream of this test only (deleted afterwards); unsettled messages of a killed
    worker come again after one second."""
    tag = uuid.uuid4().hex[:10]
    url = f"{nats_url}?stream=C{tag}&prefix=c{tag}&ack_wait=1"
    yield url
    await delete_streams(nats_url, NatsOptions.from_url(url))


async def test_sigkilled_worker_loses_nothing(crash_url: str, tmp_path: Path) -> None:
    report = await crash_test(crash_url, effects=tmp_path / "effects.db", seed=7)
    assert report.distinct == report.messages == 10_000, "every message handled at least once"
    assert report.effects == report.messages, "with dedupe, each side effect exactly once"
    assert report.attempts >= report.messages
