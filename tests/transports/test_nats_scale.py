"""NATS JetStream: three worker processes of one group keep each key's order, share the work,
and take over a killed worker's partitions (see :mod:`scale_helpers`)."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import nats
import nats.js.errors
import pytest
from scale_helpers import Balanced, scale_run
from test_nats import delete_streams

from tidings.transports.nats import NatsOptions
from tidings.transports.nats.groups import durable_name


@pytest.fixture
async def url(nats_url: str) -> AsyncIterator[str]:
    """A stream of this test only; an ack wait and pull requests of one second, so leases of
    three seconds."""
    tag = uuid.uuid4().hex[:10]
    url = f"{nats_url}?stream=X{tag}&prefix=x{tag}&ack_wait=1&pull_expires=1"
    yield url
    await delete_streams(nats_url, NatsOptions.from_url(url))


@pytest.fixture
async def balanced(nats_url: str, url: str) -> AsyncIterator[Balanced]:
    """Whether every partition lease is held, each worker holding some."""
    options = NatsOptions.from_url(url)
    nc = await nats.connect(nats_url)

    async def balanced(topic: str, group: str, workers: int) -> bool:
        try:
            kv = await nc.jetstream().key_value(options.lease_bucket)
        except nats.js.errors.NotFoundError:
            return False  # no worker got that far yet
        owners: Counter[bytes] = Counter()
        for n in range(options.partitions):
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                entry = await kv.get(f"lease.{durable_name(group, topic)}.{n}")
                owners[entry.value or b""] += 1
        return sum(owners.values()) == options.partitions and len(owners) == workers

    yield balanced
    await nc.close()


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
