"""SQLite retention under a sustained load (``make test-stress``): at 20,000 messages a second,
all acknowledged, the log and the file stay small.

``TIDINGS_STRESS_SECONDS`` sets how long the load lasts (default 60). Run with ``-s`` to see
one line per second: messages sent and received, log rows, file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tidings.message import Message
from tidings.testing.receiver import opened, waiting
from tidings.transports.sqlite import SqliteTransport

pytestmark = pytest.mark.stress

RATE = 20_000
"""Messages a second, published in batches of 1% of it every 10 ms."""
SECONDS = float(os.environ.get("TIDINGS_STRESS_SECONDS", "60"))
PAYLOAD = b'{"order":"o-12345","amount":1999,"currency":"EUR","note":"' + b"x" * 40 + b'"}'


def on_disk(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def test_the_log_stays_small_at_20k_messages_a_second(tmp_path: Path) -> None:
    path = tmp_path / "load.db"
    received = 0
    progress = asyncio.Condition()
    peak_rows = peak_bytes = 0

    async with opened(lambda: SqliteTransport(f"sqlite:///{path}")) as transport:
        subscription = transport.subscribe("load", group="g", prefetch=2000)

        async def consume() -> None:
            nonlocal received
            async for batch in subscription:
                for delivery in batch:
                    await delivery.ack()
                async with progress:
                    received += len(batch)
                    progress.notify_all()

        consumer = asyncio.create_task(consume())
        per_batch = RATE // 100
        sent = 0
        started = time.monotonic()
        next_look = started + 1
        with contextlib.closing(sqlite3.connect(path)) as monitor:
            while (elapsed := time.monotonic() - started) < SECONDS:
                if (ahead := sent / RATE - elapsed) > 0:
                    await asyncio.sleep(ahead)  # pacing the load, not synchronising
                batch = [Message("order", PAYLOAD) for _ in range(per_batch)]
                await transport.publish("load", batch)
                sent += per_batch
                if time.monotonic() >= next_look:
                    next_look += 1
                    (rows,) = monitor.execute("SELECT count(*) FROM tidings_log").fetchone()
                    size = on_disk(path)
                    print(
                        f"{elapsed:5.0f}s sent {sent} ({sent / elapsed:,.0f}/s) received "
                        f"{received}: log {rows} rows, {size / 1e6:.1f} MB"
                    )
                    if elapsed > 5:  # past the start, when nothing was deleted yet
                        peak_rows, peak_bytes = max(peak_rows, rows), max(peak_bytes, size)
        async with waiting(30, "the last messages"), progress:
            await progress.wait_for(lambda: received == sent)
        await subscription.aclose()
        await consumer
    print(f"peak after 5s: {peak_rows} rows, {peak_bytes / 1e6:.1f} MB; sent {sent}")
    assert peak_rows < 3 * RATE, "the log holds no more than a few seconds of messages"
    assert peak_bytes < 64 << 20


async def test_a_drained_backlog_gives_its_space_back(tmp_path: Path) -> None:
    """1,000,000 messages published while their group was stopped, then consumed: the file
    shrinks back to about its ``spare_mb`` (32 MB), 32 MB a second while consumers run."""
    path = tmp_path / "backlog.db"
    async with opened(lambda: SqliteTransport(f"sqlite:///{path}")) as transport:
        subscription = transport.subscribe("load", group="g", prefetch=2000)
        batches = aiter(subscription)
        await transport.publish("load", [Message("order", PAYLOAD)])
        for delivery in await anext(batches):  # the group exists from here on
            await delivery.ack()
        started = time.monotonic()
        for _ in range(1000):
            await transport.publish("load", [Message("order", PAYLOAD) for _ in range(1000)])
        grown = on_disk(path)
        received = 0
        while received < 1_000_000:
            batch = await anext(batches)
            for delivery in batch:
                await delivery.ack()
            received += len(batch)
        drained, took = on_disk(path), time.monotonic() - started
        with contextlib.closing(sqlite3.connect(path)) as monitor:
            async with waiting(60, "the free pages given back"):
                while monitor.execute("PRAGMA freelist_count").fetchone()[0] > 33 << 8:
                    await transport.publish("load", [Message("order", PAYLOAD)])
                    for delivery in await anext(batches):  # each fetch may give space back
                        await delivery.ack()
                    await asyncio.sleep(0.2)  # a trickle of traffic, not synchronisation
        await subscription.aclose()
    print(
        f"backlog: {grown / 1e6:.0f} MB, consumed after {took:.0f}s: {drained / 1e6:.0f} MB, "
        f"given back {time.monotonic() - started - took:.0f}s later, closed: "
        f"{on_disk(path) / 1e6:.0f} MB"
    )
    assert grown > 150_000_000
    assert on_disk(path) < 40_000_000
