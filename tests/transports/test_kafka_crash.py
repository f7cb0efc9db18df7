"""A Kafka worker killed with SIGKILL three times loses no message."""

from __future__ import annotations

from pathlib import Path

from kafka_conftest import kafka_url, tansu  # noqa: F401  # fixtures

from tidings.testing.crash import crash_test


async def test_sigkilled_worker_loses_nothing(kafka_url: str, tmp_path: Path) -> None:  # noqa: F811
    # A killed member keeps its partitions until its session times out (2 s here); then the
    # next worker gets them and starts after the last committed offset.
    report = await crash_test(kafka_url, effects=tmp_path / "effects.db", seed=7)
    assert report.distinct == report.messages == 10_000, "every message handled at least once"
    assert report.effects == report.messages, "with dedupe, each side effect exactly once"
    assert report.attempts >= report.messages
