"""B4: event store, 10,000 aggregates x 10 events: append, then rehydrate every aggregate.

Each aggregate is appended in one transaction with its expected-version check (a new stream),
then every aggregate is rehydrated: its stream is read and its events decoded into objects. Side
by side in one run:

SQLite
    * raw sqlite3 (the limit): WAL, synchronous=NORMAL, one row per event, ``executemany``,
      a ``SELECT max(version)`` check, JSON payloads; one commit per aggregate.
    * tidings ``EventStore("sqlite:///…")`` with appends awaited one at a time (one commit per
      aggregate, like the limit) and with 100 concurrent appenders (group commit).
    * tidings ``Repository.save`` of an aggregate that recorded the events, one writer awaiting
      each save (so no group commit), and ``Repository.load`` to rehydrate.
    * the ``eventsourcing`` package (Application + Aggregate on its SQLite recorder), at its
      default (synchronous=FULL) and patched to synchronous=NORMAL, the limit's setting.
PostgreSQL (skipped with a note when the server is down)
    * raw asyncpg (the limit): per aggregate a transaction with ``SELECT max(version)`` and
      ``executemany``; one row per event; no answer to the gap problem (a bigserial position).
    * tidings ``EventStore("postgresql://…")``, sequential and with 16 concurrent appenders,
      and ``Repository.save``/``load`` with one writer.

Every contender encodes and decodes with the same JSON codec (msgspec) and the same event
classes. Run: ``python -m bench.b4_eventstore [--quick] [--rounds N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.common import Row, print_table
from tidings.codec import JsonCodec, Registry
from tidings.eventsourcing.aggregate import Aggregate
from tidings.eventsourcing.repository import Repository
from tidings.eventsourcing.store import NO_STREAM, EventStore, NewEvent

PG_DSN = os.environ.get("TIDINGS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True, slots=True)
class AccountOpened:
    owner: str


@dataclass(frozen=True, slots=True)
class MoneyDeposited:
    amount: int


CLASSES: dict[str, type] = {"AccountOpened": AccountOpened, "MoneyDeposited": MoneyDeposited}
NAMES = {cls: name for name, cls in CLASSES.items()}
codec = JsonCodec()
names = Registry()
for _name, _cls in CLASSES.items():
    names.register(_cls, _name)


class Ledger(Aggregate):
    """The aggregate the ``Repository.save`` rows record the workload's events on."""

    balance: int = 0

    def apply(self, event: object) -> None:
        if isinstance(event, MoneyDeposited):
            self.balance += event.amount


def domain_events(i: int, per_aggregate: int) -> list[Any]:
    return [AccountOpened(f"owner-{i}")] + [
        MoneyDeposited(10 + n) for n in range(per_aggregate - 1)
    ]


@dataclass
class Result:
    append: float
    rehydrate: float


@dataclass
class Workload:
    aggregates: int
    per_aggregate: int

    @property
    def events(self) -> int:
        return self.aggregates * self.per_aggregate

    def ids(self) -> list[str]:
        return [str(uuid.uuid4()) for _ in range(self.aggregates)]


def _check(count: int, work: Workload, who: str) -> None:
    if count != work.events:
        raise AssertionError(f"{who} rehydrated {count} events, expected {work.events}")


# -- SQLite ---------------------------------------------------------------------------------


def raw_sqlite(path: str, work: Workload) -> Result:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL,"
        " version INTEGER NOT NULL, type TEXT NOT NULL, data BLOB NOT NULL,"
        " UNIQUE (stream, version))"
    )
    ids = work.ids()
    encode = codec.encode
    started = time.perf_counter()
    for i, stream in enumerate(ids):
        events = domain_events(i, work.per_aggregate)
        conn.execute("BEGIN IMMEDIATE")
        current = conn.execute(
            "SELECT max(version) FROM events WHERE stream = ?", (stream,)
        ).fetchone()[0]
        if current is not None:
            raise AssertionError("conflict")
        conn.executemany(
            "INSERT INTO events (stream, version, type, data) VALUES (?, ?, ?, ?)",
            [(stream, v, NAMES[type(e)], encode(e)) for v, e in enumerate(events, 1)],
        )
        conn.execute("COMMIT")
    appended = time.perf_counter() - started
    decode = codec.decode
    count = 0
    started = time.perf_counter()
    for stream in ids:
        rows = conn.execute(
            "SELECT type, data FROM events WHERE stream = ? ORDER BY version", (stream,)
        )
        count += len([decode(data, CLASSES[name]) for name, data in rows])
    rehydrated = time.perf_counter() - started
    conn.close()
    _check(count, work, "raw sqlite3")
    return Result(appended, rehydrated)


async def tidings_store(url: str, work: Workload, concurrency: int) -> Result:
    """Append through ``EventStore.append`` (``concurrency`` appenders), then read each stream."""
    ids = work.ids()
    encode = codec.encode
    async with EventStore(url) as store:

        async def save(i: int) -> None:
            events = domain_events(i, work.per_aggregate)
            new = [NewEvent(NAMES[type(e)], encode(e)) for e in events]
            await store.append(ids[i], new, expected_version=NO_STREAM)

        started = time.perf_counter()
        await _run(save, work.aggregates, concurrency)
        appended = time.perf_counter() - started
        decode = codec.decode
        count = 0
        started = time.perf_counter()
        for stream in ids:
            count += len([decode(r.data, CLASSES[r.type]) async for r in store.read(stream)])
        rehydrated = time.perf_counter() - started
        await _drop_schema(store)
    _check(count, work, "tidings")
    return Result(appended, rehydrated)


async def tidings_repository(url: str, work: Workload) -> Result:
    """One writer: each aggregate records its events and is saved by ``Repository.save``,
    awaited before the next one starts (no other save to share a commit with); then each
    aggregate is rehydrated by ``Repository.load``."""
    ids = work.ids()
    async with EventStore(url) as store:
        repository = Repository(store, Ledger, codec=codec, registry=names)
        started = time.perf_counter()
        for i, stream in enumerate(ids):
            account = Ledger(stream)
            for event in domain_events(i, work.per_aggregate):
                account.record(event)
            await repository.save(account)
        appended = time.perf_counter() - started
        count = 0
        started = time.perf_counter()
        for stream in ids:
            count += (await repository.load(stream)).version
        rehydrated = time.perf_counter() - started
        await _drop_schema(store)
    _check(count, work, "tidings Repository")
    return Result(appended, rehydrated)


async def _run(save: Callable[[int], Awaitable[None]], total: int, concurrency: int) -> None:
    if concurrency == 1:
        for i in range(total):
            await save(i)
        return
    todo = iter(range(total))

    async def worker() -> None:
        for i in todo:
            await save(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@functools.cache
def _eventsourcing_account() -> Any:
    """The eventsourcing aggregate, defined once (the package refuses a second class per name)."""
    from eventsourcing.domain import Aggregate, event

    class Account(Aggregate):
        @event("Opened")
        def __init__(self, owner: str) -> None:
            self.owner = owner
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int) -> None:
            self.balance += amount

    return Account


def eventsourcing_sqlite(path: str, work: Workload, synchronous: str | None) -> Result:
    from eventsourcing.application import Application

    Account = _eventsourcing_account()
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}
    with _eventsourcing_synchronous(synchronous):
        app = Application[uuid.UUID](env=env)
        ids = []
        started = time.perf_counter()
        for i in range(work.aggregates):
            account = Account(f"owner-{i}")
            for n in range(work.per_aggregate - 1):
                account.deposit(10 + n)
            app.save(account)
            ids.append(account.id)
        appended = time.perf_counter() - started
        count = 0
        started = time.perf_counter()
        for id_ in ids:
            count += len(list(app.events.get(id_)))
        rehydrated = time.perf_counter() - started
        app.close()
    _check(count, work, "eventsourcing")
    return Result(appended, rehydrated)


@contextmanager
def _eventsourcing_synchronous(level: str | None) -> Iterator[None]:
    """eventsourcing has no setting for it: patch its connection factory for the run."""
    if level is None:
        yield
        return
    from eventsourcing.sqlite import SQLiteConnectionPool

    original = SQLiteConnectionPool._create_connection

    def create(self: Any) -> Any:
        connection = original(self)
        connection._sqlite_conn.execute(f"PRAGMA synchronous = {level}")
        return connection

    SQLiteConnectionPool._create_connection = create  # type: ignore[method-assign]
    try:
        yield
    finally:
        SQLiteConnectionPool._create_connection = original  # type: ignore[method-assign]


# -- PostgreSQL -----------------------------------------------------------------------------


async def raw_asyncpg(work: Workload, schema: str) -> Result:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"')
        await conn.execute(
            "CREATE TABLE events (position bigserial PRIMARY KEY, stream text NOT NULL,"
            " version integer NOT NULL, type text NOT NULL, data bytea NOT NULL,"
            " UNIQUE (stream, version))"
        )
        ids = work.ids()
        encode = codec.encode
        started = time.perf_counter()
        for i, stream in enumerate(ids):
            events = domain_events(i, work.per_aggregate)
            async with conn.transaction():
                current = await conn.fetchval(
                    "SELECT max(version) FROM events WHERE stream = $1", stream
                )
                if current is not None:
                    raise AssertionError("conflict")
                await conn.executemany(
                    "INSERT INTO events (stream, version, type, data) VALUES ($1, $2, $3, $4)",
                    [(stream, v, NAMES[type(e)], encode(e)) for v, e in enumerate(events, 1)],
                )
        appended = time.perf_counter() - started
        decode = codec.decode
        count = 0
        started = time.perf_counter()
        for stream in ids:
            rows = await conn.fetch(
                "SELECT type, data FROM events WHERE stream = $1 ORDER BY version", stream
            )
            count += len([decode(data, CLASSES[name]) for name, data in rows])
        rehydrated = time.perf_counter() - started
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    _check(count, work, "raw asyncpg")
    return Result(appended, rehydrated)


async def _drop_schema(store: EventStore) -> None:
    backend: Any = store.backend
    if hasattr(backend, "schema") and backend.schema != "public":
        async with backend.transaction() as tx:
            await tx.connection.execute(f'DROP SCHEMA "{backend.schema}" CASCADE')


async def _postgres_up() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN, timeout=3)
        await conn.close()
    except (TimeoutError, OSError, ImportError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- the run --------------------------------------------------------------------------------


Contender = tuple[str, str, Callable[[], Result]]
REPOSITORY = "tidings Repository, 1 writer"


def contenders(work: Workload, directory: str, postgres: bool) -> list[Contender]:
    """(database, name, run) for every contender; the limit comes first in each database.

    Every run gets a fresh SQLite file or PostgreSQL schema.
    """

    def file() -> str:
        return os.path.join(directory, f"{uuid.uuid4().hex}.db")

    def tidings_on(url: Callable[[], str], concurrency: int) -> Callable[[], Result]:
        return lambda: asyncio.run(tidings_store(url(), work, concurrency))

    def appenders(c: int) -> str:
        return f"tidings, {c} appender{'s' if c > 1 else ''}"

    found: list[Contender] = [
        ("SQLite", "raw sqlite3 (limit)", lambda: raw_sqlite(file(), work)),
        ("SQLite", appenders(1), tidings_on(lambda: f"sqlite:///{file()}", 1)),
        ("SQLite", appenders(100), tidings_on(lambda: f"sqlite:///{file()}", 100)),
        (
            "SQLite",
            REPOSITORY,
            lambda: asyncio.run(tidings_repository(f"sqlite:///{file()}", work)),
        ),
        (
            "SQLite",
            "eventsourcing, FULL (default)",
            lambda: eventsourcing_sqlite(file(), work, None),
        ),
        ("SQLite", "eventsourcing, NORMAL", lambda: eventsourcing_sqlite(file(), work, "NORMAL")),
    ]
    if postgres:
        tag = f"b4_{os.getpid()}"

        def url(concurrency: int) -> str:
            schema = f"{tag}_{uuid.uuid4().hex[:8]}"
            return f"{PG_DSN}?schema={schema}&pool_size={concurrency}"

        found.append(
            (
                "PostgreSQL",
                "raw asyncpg (limit)",
                lambda: asyncio.run(raw_asyncpg(work, f"{tag}_{uuid.uuid4().hex[:8]}")),
            )
        )
        for c in (1, 16):
            found.append(("PostgreSQL", appenders(c), tidings_on(functools.partial(url, c), c)))
        found.append(
            ("PostgreSQL", REPOSITORY, lambda: asyncio.run(tidings_repository(url(1), work)))
        )
    return found


def measure(work: Workload, rounds: int, postgres: bool) -> dict[str, dict[str, Result]]:
    """Every contender's best append and rehydrate times, grouped by database.

    Rounds are interleaved (every contender once per round) so that a noisy moment of the
    machine does not favour one of them.
    """
    results: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="b4-") as directory:
        for _ in range(rounds):
            for database, name, run in contenders(work, directory, postgres):
                gc.collect()
                result = run()
                best = results.setdefault(database, {}).get(name, result)
                results[database][name] = Result(
                    min(best.append, result.append), min(best.rehydrate, result.rehydrate)
                )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.b4_eventstore", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 aggregates, one round")
    parser.add_argument("--rounds", type=int, default=None, help="best of N rounds (default 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    work = Workload(1_000 if args.quick else 10_000, 10)
    rounds = args.rounds or 1
    down = None if args.no_postgres else asyncio.run(_postgres_up())
    if down is not None:
        print(f"PostgreSQL part skipped: cannot reach {PG_DSN} ({down})")
    results = measure(work, rounds, postgres=not args.no_postgres and down is None)
    title = f"B4 event store, {work.aggregates:,} aggregates x {work.per_aggregate} events"
    for database, contenders in results.items():
        if not contenders:
            continue
        limit = next(name for name in contenders if name.endswith("(limit)"))
        for phase in ("append", "rehydrate"):
            rows = [
                Row(name, work.events, getattr(result, phase))
                for name, result in contenders.items()
            ]
            print_table(f"{title}: {phase}, {database}", rows, limit, as_json=args.json)


if __name__ == "__main__":
    main()
