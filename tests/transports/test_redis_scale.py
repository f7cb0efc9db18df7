"""Redis Streams: three worker processes of one group keep each key's order, share the work,
and take over a killed worker's partitions (see :mod:`scale_helpers`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from scale_helpers import Balanced, scale_run
from test_redis import delete_prefix, unique_prefix

from tidings.transports.kit.partitions import DEFAULT_PARTITIONS
from tidings.transports.redis.wire import Keys


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = unique_prefix()
    yield prefix
    await delete_prefix(redis_url, prefix)


@pytest.fixture
def url(redis_url: str, prefix: str) -> str:
    """Leases of one second: a killed worker's partitions are free a second later."""
    return f"{redis_url}?prefix={prefix}&lease=1"


@pytest.fixture
async def balanced(redis_url: str, prefix: str) -> AsyncIterator[Balanced]:
    """Whether every partition lease is held, each worker holding some."""
    client = redis.Redis.from_url(redis_url)

    async def balanced(topic: str, group: str, workers: int) -> bool:
        keys = Keys(prefix)
        names = [keys.lease(topic, group, n) for n in range(DEFAULT_PARTITIONS)]
        owners = Counter(owner for owner in await client.mget(names) if owner is not None)
        return sum(owners.values()) == DEFAULT_PARTITIONS and len(owners) == workers

    yield balanced
    await client.aclose()


async def test_workers_share_keys_in_order(url: str, balanced: Balanced) -> None:
    report = await scale_run(url, balanced, keys=100, per_key=5)
    assert not report.missing(), "every message handled"
    assert report.again() == 0, "each message handled once"
    assert report.out_of_order() == [], "each key's messages handled in publish order"
    shares = report.shares()
    assert len(shares) == 3, f"work spread: {shares}"
    assert min(shares.values()) >= 0.15, f"work spread: {shares}"


async def test_a_killed_workers_partitions_move_on(url: str, balanced: Balanced) -> None:
    report = await scale_run(url, balanced, keys=100, per_key=5, kill=True)
    assert not report.missing(), "nothing lost"
    assert report.out_of_order() == [], "each key's messages handled in publish order"
    assert set(report.shares()) == {"w0", "w1", "w2"}
