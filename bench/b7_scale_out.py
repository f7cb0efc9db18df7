"""B7: scale-out: one group's throughput with 1, 2 and 4 worker processes.

Each worker is a process of :mod:`tidings.testing.scale_worker`: a ``Bus`` with one ordered
handler (``concurrency=8``) whose I/O is 2 ms of ``asyncio.sleep``. Messages carry 100 keys.
The workers start first (each reports that its bus runs); then the clock starts, every message
is published in batches of 500, and the clock stops once each was handled. Each row is the
best of the runs, on a fresh topic and group; the ratio is to one worker (the speed-up).

With 8 handler calls of 2 ms at once, one worker handles at most 4,000 messages a second; N
workers N times that, as long as the database and the machine's cores keep up. Each row's
note says how busy the machine's cores were meanwhile (all work on the machine counted): near
100%, the cores are the limit; well below, the broker or the workers' waiting is.

On SQLite (a file in a temporary directory), PostgreSQL (``TIDINGS_PG_DSN``, default the
local server, in a schema of its own), Redis Streams, NATS JetStream and RabbitMQ (the local
servers, in a namespace of their own, 16 partitions); ``--kafka`` adds Kafka on a tansu
broker of its own (12 partitions).
Run: ``python -m bench.b7_scale_out [--quick] [--json] [--kafka | --only NAME]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from bench.common import Row, print_table
from tidings.errors import TransportError
from tidings.message import Message
from tidings.testing.receiver import Receiver, prime, unique
from tidings.testing.scale import Workers
from tidings.testing.tansu import Tansu
from tidings.transports import from_url
from tidings.transports.base import Groups
from tidings.transports.kit.partitions import DEFAULT_PARTITIONS

KEYS = 100
DELAY = 0.002
WORKERS = (1, 2, 4)
KAFKA_PARTITIONS = 12
PG_DSN = os.environ.get("TIDINGS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("TIDINGS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def run_once(
    url: str, processes: int, count: int, partitions: int | None
) -> tuple[float, float, float]:
    """Seconds from the first publish until ``count`` messages were handled by ``processes``
    workers of one group, how busy the machine's cores were meanwhile (0 to 1), and how long
    the group took to spread its ``partitions`` (None: keys shared without partitions) over the
    workers once they ran, before the first publish. The group is dropped afterwards (on
    RabbitMQ its queues hold broker file handles)."""
    topic, group = unique("b7"), unique("b7")
    # the group exists before publishing where a new one starts at the end (RabbitMQ, NATS);
    # primed through a transport of its own, whose close frees the partitions the probes took.
    # (On Kafka a member that left is waited for by the next join: nothing to prime there.)
    primer = from_url(url)
    await primer.start()
    try:
        if not primer.features.replays_history:
            await prime(primer, topic, [Receiver(primer.subscribe(topic, group=group))])
    finally:
        await primer.aclose()
    transport = from_url(url)
    await transport.start()
    try:
        async with Workers(url, topic, group, delay=DELAY, timeout=600.0) as workers:
            await asyncio.gather(*(workers.start(f"w{n}") for n in range(processes)))
            ready = time.perf_counter()
            if partitions is not None:
                spread = f"{partitions} partitions spread over the workers"
                await workers.until(lambda: workers.spread(partitions), spread)
            started, cpu = time.perf_counter(), cpu_times()
            for first in range(0, count, 500):
                batch = [
                    Message("b7.job", b"{}", {"n": str(n)}, f"key-{n % KEYS}")
                    for n in range(first, min(first + 500, count))
                ]
                await transport.publish(topic, batch)
            await workers.until(lambda: len(workers.handled) >= count, f"{count} handled")
            elapsed, busy = time.perf_counter() - started, busy_since(cpu)
        if isinstance(transport, Groups):
            await drop_group(transport, topic, group)
        return elapsed, busy, started - ready
    finally:
        await transport.aclose()


async def drop_group(transport: Groups, topic: str, group: str) -> None:
    """Drop the group once the broker saw the workers' connections end (it refuses while the
    group has consumers, and learns of a process's exit a moment after it)."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await transport.drop_group(topic, group)
            except TransportError:
                await asyncio.sleep(0.2)  # polling the broker's view, nothing to await


def cpu_times() -> tuple[int, int]:
    """The machine's (busy, total) CPU time so far, in ticks (Linux ``/proc/stat``)."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and waiting for I/O
    return sum(ticks) - idle, sum(ticks)


def busy_since(before: tuple[int, int]) -> float:
    """The part of the machine's CPU time that was busy since ``before`` (of :func:`cpu_times`):
    the other work on the machine included."""
    busy, total = cpu_times()
    return (busy - before[0]) / max(total - before[1], 1)


def measure(
    title: str, url: str, count: int, repeat: int, as_json: bool, partitions: int | None
) -> None:
    rows = []
    for processes in WORKERS:
        runs = [asyncio.run(run_once(url, processes, count, partitions)) for _ in range(repeat)]
        best, busy, settling = min(runs)
        note = f"limit {processes * 8 / DELAY:,.0f}/s, cores {busy:.0%} busy"
        if partitions is not None:
            note += f", partitions spread in {settling:.1f} s"
        rows.append(Row(f"{processes} worker{'s' if processes > 1 else ''}", count, best, note))
    print_table(f"B7 scale-out, {title}", rows, "1 worker", as_json)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL of a schema of its own on the local PostgreSQL, dropped afterwards."""
    import asyncpg

    schema = f"b7_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{PG_DSN}?schema={schema}"
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(PG_DSN)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A URL of a key prefix of its own on the local Redis, its keys deleted afterwards."""
    from bench.b6_redis import URL, delete_keys

    prefix = f"b7{uuid.uuid4().hex[:10]}"
    try:
        yield f"{URL}?prefix={prefix}&lease=5"
    finally:
        asyncio.run(delete_keys(f"{prefix}:*"))


@contextmanager
def nats_stream() -> Iterator[str]:
    """A URL of a stream of its own on the local NATS server, deleted afterwards."""
    from bench.b6_nats import URL, delete_streams, names

    stream, prefix = names("b7")
    try:
        yield f"{URL}?stream={stream}&prefix={prefix}"
    finally:
        asyncio.run(delete_streams(stream, f"{stream}_DLQ", f"KV_{stream}_PARTITIONS"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--json", action="store_true", help="one JSON document per table")
    parser.add_argument("--kafka", action="store_true", help="also on Kafka (tansu)")
    parser.add_argument("--only", choices=[*_RUNS, "kafka"], help="one transport only")
    args = parser.parse_args(argv)
    count, repeat = (2_000, 1) if args.quick else (10_000, 2)
    chosen = [args.only] if args.only else [*_RUNS, *(["kafka"] if args.kafka else [])]
    for run in chosen:
        name, place, partitions = _RUNS.get(run, ("Kafka (tansu)", kafka_broker, KAFKA_PARTITIONS))
        with place() as url:
            measure(name, url, count, repeat, args.json, partitions)


@contextmanager
def sqlite_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{directory}/b7.db"


@contextmanager
def rabbitmq_exchange() -> Iterator[str]:
    """A URL of an exchange of its own (each run drops its group's queues)."""
    yield f"{AMQP_URL}?exchange=b7{uuid.uuid4().hex[:10]}&lease=2"


@contextmanager
def kafka_broker() -> Iterator[str]:
    """A URL of a tansu broker of its own, stopped afterwards."""
    with Tansu() as broker:
        yield f"{broker.url}?partitions={KAFKA_PARTITIONS}"


_RUNS: dict[str, tuple[str, Callable[[], AbstractContextManager[str]], int | None]] = {
    "sqlite": ("SQLite", sqlite_file, None),
    "postgres": ("PostgreSQL", postgres_schema, None),
    "redis": ("Redis Streams", redis_prefix, DEFAULT_PARTITIONS),
    "nats": ("NATS JetStream", nats_stream, DEFAULT_PARTITIONS),
    "rabbitmq": ("RabbitMQ", rabbitmq_exchange, DEFAULT_PARTITIONS),
}
"""Name, the URL of a place of its own, and the partitions of keyed messages (None: the keys
are shared without partitions)."""

if __name__ == "__main__":
    main()
