"""Failover on NATS JetStream: how long a dead worker's keys wait for another worker.

Two processes of :mod:`tidings.testing.scale_worker` (ordered handler, 20 ms of I/O,
``concurrency=8``) share a group; 3,000 messages over 32 keys are published once both run. When
each has handled 100, one is killed with SIGKILL. Two times are measured from the kill:

* **moved**: until the survivor begins a message of a key the dead worker was handling (its
  partition's lease ran out and the survivor took the partition);
* **all**: until every message was handled at least once (the dead worker's unsettled
  deliveries came again too).

Each URL option set is run ``--repeat`` times (default 2) on a fresh stream; the table shows
each run. Run: ``python -m bench.failover [--repeat N] [OPTIONS ...]``, where each OPTIONS is a
query string such as ``ack_wait=30&pull_expires=5`` (default: the transport's defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.b6_nats import URL, delete_streams, names
from tidings.message import Message
from tidings.testing.receiver import unique
from tidings.testing.scale import Workers
from tidings.transports import from_url

COUNT = 3_000
KEYS = 32
DELAY = 0.02
BEFORE_KILL = 100
"""Messages each worker handles before one of them is killed."""


async def failover(url: str) -> tuple[float, float]:
    """Seconds from killing one of two workers until its keys moved, and until all was handled."""
    async with Workers(url, unique("fo"), unique("fo"), delay=DELAY, timeout=300.0) as workers:
        await asyncio.gather(workers.start("a"), workers.start("b"))
        transport = from_url(url)
        try:
            batch = [
                Message("fo.job", b"{}", {"n": str(n)}, f"key-{n % KEYS}") for n in range(COUNT)
            ]
            await transport.publish(workers.topic, batch)
        finally:
            await transport.aclose()

        def done(worker: str) -> int:
            return sum(h.worker == worker for h in workers.handled)

        await workers.until(lambda: min(done("a"), done("b")) >= BEFORE_KILL, "both working")
        dead_keys = {h.key for h in workers.handled if h.worker == "a"}
        killed = time.time()
        await workers.kill("a")
        await workers.until(
            lambda: any(
                h.worker == "b" and h.key in dead_keys and h.start > killed for h in workers.handled
            ),
            "the dead worker's keys to move",
        )
        moved = min(
            h.start
            for h in workers.handled
            if h.worker == "b" and h.key in dead_keys and h.start > killed
        )
        await workers.until(lambda: len({h.n for h in workers.handled}) >= COUNT, "all handled")
        return moved - killed, time.time() - killed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("options", nargs="*", default=[""])
    args = parser.parse_args(argv)
    print(f"{'options':<36} {'moved':>8} {'all':>8}")
    for options in args.options:
        for _ in range(args.repeat):
            stream, prefix = names("fo")
            url = f"{URL}?stream={stream}&prefix={prefix}&storage=memory"
            try:
                moved, everything = asyncio.run(failover(f"{url}&{options}" if options else url))
            finally:
                asyncio.run(delete_streams(stream, f"{stream}_DLQ", f"KV_{stream}_PARTITIONS"))
            print(f"{options or '(defaults)':<36} {moved:>7.1f}s {everything:>7.1f}s", flush=True)


if __name__ == "__main__":
    main()
