"""The PostgreSQL event store on the real server: the conformance suite and what only it does.

Each test gets its own schema (dropped afterwards), so these tests can run next to others using
the same database. PostgreSQL must be running: see SERVICES.md.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tidings.errors import ServiceUnavailable
from tidings.eventsourcing.store import EventStore
from tidings.testing.eventstore_streams import GUARD, new_events
from tidings.testing.eventstore_suite import EventStoreSuite

DSN = os.environ.get("TIDINGS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    try:
        connection = await asyncpg.connect(DSN)
    except OSError:
        return  # the server went away; the test has failed already
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await connection.close()


async def open_store(schema: str) -> EventStore:
    store = EventStore(f"{DSN}?schema={schema}&pool_size=4")
    try:
        await store.start()
    except ServiceUnavailable as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc}); start it with: {START}")
    return store


class TestPostgresEventStore(EventStoreSuite):
    @pytest.fixture
    async def store(self, schema: str) -> AsyncIterator[EventStore]:
        store = await open_store(schema)
        yield store
        await store.aclose()


async def test_a_second_store_wakes_up_on_the_first_ones_appends(schema: str) -> None:
    writer, reader = await open_store(schema), await open_store(schema)
    try:
        await writer.append("s", new_events(2))
        received: list[int] = []
        async with asyncio.timeout(GUARD):
            async for event in reader.subscribe(after=0):
                received.append(event.position)
                if event.position == 2:
                    # Caught up: from here on, the append is only seen through LISTEN/NOTIFY
                    # (the wait would otherwise last the whole idle timeout of 5 s or more).
                    asyncio.get_running_loop().call_soon(
                        lambda: asyncio.ensure_future(writer.append("s", new_events(1)))
                    )
                if event.position == 3:
                    break
        assert received == [1, 2, 3]
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_stores_in_two_schemas_do_not_see_each_other(schema: str) -> None:
    other = f"{schema}_b"
    first, second = await open_store(schema), await open_store(other)
    try:
        await first.append("s", new_events(2))
        assert [e async for e in second.read_all()] == []
        assert await second.head_position() == 0
    finally:
        await first.aclose()
        await second.aclose()
        connection = await asyncpg.connect(DSN)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')
        await connection.close()


async def test_projection_rows_commit_and_roll_back_with_the_checkpoint(schema: str) -> None:
    store = await open_store(schema)
    try:
        async with store.transaction() as tx:
            await tx.connection.execute("CREATE TABLE balances (id text PRIMARY KEY, amount int)")
            await tx.connection.execute("INSERT INTO balances VALUES ('a', 10)")
            await tx.set_checkpoint("balances", 1)

        async def failing() -> None:
            async with store.transaction() as tx:
                await tx.connection.execute("UPDATE balances SET amount = 99")
                await tx.set_checkpoint("balances", 2)
                raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError, match="handler failed"):
            await failing()

        async with store.transaction() as tx:
            rows = await tx.connection.fetch("SELECT id, amount FROM balances")
        assert [tuple(row) for row in rows] == [("a", 10)]
        assert await store.get_checkpoint("balances") == 1
    finally:
        await store.aclose()


async def test_an_unreachable_server_is_service_unavailable() -> None:
    store = EventStore("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(
        ServiceUnavailable, match=r"PostgreSQL is not reachable at 127\.0\.0\.1:1/test"
    ):
        await store.start()


def test_the_schema_must_be_a_plain_identifier() -> None:
    with pytest.raises(ValueError, match="schema"):
        EventStore(f"{DSN}?schema=x;drop")
