"""A RabbitMQ worker killed with SIGKILL three times loses no message."""

from __future__ import annotations

from pathlib import Path

from test_rabbitmq import amqp_namespace, exchange  # noqa: F401  # fixtures

from tidings.testing.crash import crash_test


async def test_sigkilled_worker_loses_nothing(
    amqp_url: str,
    exchange: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = f"{amqp_url}?exchange={exchange}"
    report = await crash_test(url, effects=tmp_path / "effects.db", seed=7)
    assert report.distinct == report.messages == 10_000, "every message handled at least once"
    assert report.effects == report.messages, "with dedupe, each side effect exactly once"
    assert report.attempts >= report.messages
