"""A SQLite worker killed with SIGKILL three times loses no message."""

from __future__ import annotations

from pathlib import Path

from tidings.testing.crash import crash_test


async def test_sigkilled_worker_loses_nothing(tmp_path: Path) -> None:
    report = await crash_test(
        f"sqlite:///{tmp_path}/queue.db?lease=1", effects=tmp_path / "effects.db", seed=5
    )
    assert report.distinct == report.messages == 10_000, "every message handled at least once"
    assert report.effects == report.messages, "with dedupe, each side effect exactly once"
    assert report.attempts >= report.messages
