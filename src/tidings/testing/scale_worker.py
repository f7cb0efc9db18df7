"""A worker process for scale-out tests::

    python -m tidings.testing.scale_worker URL TOPIC GROUP NAME [--delay S] [--concurrency N]

It runs a :class:`~tidings.Bus` on ``URL`` with one ordered handler (``concurrency`` 8 unless
``--concurrency`` says otherwise) subscribed to ``TOPIC`` in ``GROUP``. The handler waits
``--delay`` seconds (its I/O, 5 ms by default) and then writes one line to stdout::

    handled NAME KEY N START

``KEY`` is the message's key, ``N`` its ``n`` header and ``START`` when the handler began (Unix
time, the same clock in every process of the machine), so that a test can check the order in
which a key's messages were handled across processes. Once the bus runs it writes ``ready
NAME``, and ``partitions NAME [0,1,…]`` (JSON; ``null`` where the transport has none) whenever
the partitions its consumer reads change. SIGTERM or SIGINT drain the bus and end the process
with status 0; SIGKILL is a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

from tidings.bus import Bus
from tidings.message import Message
from tidings.testing.receiver import PROBE_HEADER

__all__ = ["main"]


async def _work(
    url: str, topic: str, group: str, name: str, delay: float, concurrency: int
) -> None:
    out = sys.stdout

    async def handle(message: Message) -> None:
        if PROBE_HEADER in message.headers:
            return  # the publisher's probe for the group, left over (its receiver closed)
        start = time.time()
        await asyncio.sleep(delay)
        out.write(f"handled {name} {message.key} {message.headers.get('n')} {start:.6f}\n")
        out.flush()

    bus = Bus(url)
    bus.subscribe(topic, handle, group=group, ordered=True, concurrency=concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with bus:
        out.write(f"ready {name}\n")
        out.flush()
        reported: object = ()
        while not stop.is_set():
            partitions = bus.health().routes[0].partitions
            if partitions != reported:
                reported = partitions
                out.write(f"partitions {name} {json.dumps(partitions, separators=(',', ':'))}\n")
                out.flush()
            with contextlib.suppress(TimeoutError):  # health tells no one when they change
                async with asyncio.timeout(0.02):
                    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tidings.testing.scale_worker")
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("name")
    parser.add_argument("--delay", type=float, default=0.005)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    asyncio.run(_work(args.url, args.topic, args.group, args.name, args.delay, args.concurrency))


if __name__ == "__main__":
    main()
