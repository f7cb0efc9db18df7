"""B4's rehydrate on PostgreSQL, paired: raw asyncpg and tidings read the same aggregates in
turn, stream by stream, so that both meet the same moment of a noisy machine.

B4 measures each contender's phase on its own (a few hundred milliseconds each, at different
moments); here every stream is read by one and then the other, and each read is timed twice:
wall time (what B4 reports) and the process's CPU time (the client's own work, without the
wait for the server). The same 1 + 9 events per aggregate as B4, the same JSON codec, each
contender on its own connection and schema. Run:
``python -m bench.b4_paired_reads [--aggregates N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from bench.b4_eventstore import CLASSES, NAMES, PG_DSN, codec, domain_events
from tidings.eventsourcing.store import NO_STREAM, EventStore, NewEvent

PER_AGGREGATE = 10
_RAW_READ = "SELECT type, data FROM events WHERE stream = $1 ORDER BY version"

Read = Callable[[str], Awaitable[int]]


async def _timed(read: Read, stream: str, wall: list[float], cpu: list[float]) -> None:
    started, used = time.perf_counter(), time.process_time()
    await read(stream)
    cpu.append(time.process_time() - used)
    wall.append(time.perf_counter() - started)


async def main(aggregates: int, rounds: int) -> None:
    schema = f"b4p_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_DSN)
    store = EventStore(f"{PG_DSN}?schema={schema}t&pool_size=1")
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}r"; SET search_path = "{schema}r"')
        await conn.execute(
            "CREATE TABLE events (position bigserial PRIMARY KEY, stream text NOT NULL,"
            " version integer NOT NULL, type text NOT NULL, data bytea NOT NULL,"
            " UNIQUE (stream, version))"
        )
        await store.start()
        ids = [str(uuid.uuid4()) for _ in range(aggregates)]
        for i, stream in enumerate(ids):
            events = domain_events(i, PER_AGGREGATE)
            await conn.executemany(
                "INSERT INTO events (stream, version, type, data) VALUES ($1, $2, $3, $4)",
                [(stream, v, NAMES[type(e)], codec.encode(e)) for v, e in enumerate(events, 1)],
            )
            new = [NewEvent(NAMES[type(e)], codec.encode(e)) for e in events]
            await store.append(stream, new, expected_version=NO_STREAM)

        async def raw(stream: str) -> int:
            rows = await conn.fetch(_RAW_READ, stream)
            return len([codec.decode(data, CLASSES[name]) for name, data in rows])

        async def tidings(stream: str) -> int:
            return len([codec.decode(r.data, CLASSES[r.type]) async for r in store.read(stream)])

        print(f"PostgreSQL rehydrate, {aggregates:,} aggregates x {PER_AGGREGATE} events, paired")
        print("  round   wall us per aggregate (raw / tidings)   CPU us (raw / tidings)   ratio")
        for number in range(1, rounds + 1):
            times: dict[str, tuple[list[float], list[float]]] = {
                "raw": ([], []),
                "tidings": ([], []),
            }
            for stream in ids:
                await _timed(raw, stream, *times["raw"])
                await _timed(tidings, stream, *times["tidings"])
            (raw_wall, raw_cpu), (our_wall, our_cpu) = times["raw"], times["tidings"]
            mean = statistics.fmean
            print(
                f"  {number:>5}   {mean(raw_wall) * 1e6:>12.1f} / {mean(our_wall) * 1e6:<12.1f}"
                f"              {mean(raw_cpu) * 1e6:>6.1f} / {mean(our_cpu) * 1e6:<6.1f}"
                f"      {sum(raw_wall) / sum(our_wall):.2f}x"
            )
    finally:
        await store.aclose()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}r", "{schema}t" CASCADE')
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.b4_paired_reads", description=__doc__)
    parser.add_argument("--aggregates", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.aggregates, args.rounds))
