"""Transactional projections: rows and checkpoint commit together, so each event counts once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tidings.eventsourcing import Projection, ProjectionContext, Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account, MoneyDeposited

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


class Deposits:
    """A read model of one row per deposit, in the store's own database."""

    def __init__(self, store: EventStore, backend: str) -> None:
        self.store = store
        self.sqlite = backend == "sqlite"
        self.fail_at: Decimal | None = None
        self.projection = projection = Projection("deposits", transactional=True, batch_size=3)
        projection.on(MoneyDeposited)(self.deposited)
        projection.reset(self.reset)

    async def execute(self, connection: Any, sql: str, *args: Any) -> None:
        if self.sqlite:
            connection.execute(sql.replace("$1", "?").replace("$2", "?"), args)
        else:
            await connection.execute(sql, *args)

    async def deposited(self, event: MoneyDeposited, ctx: ProjectionContext) -> None:
        if event.amount == self.fail_at:
            raise RuntimeError("disk full")
        insert = "INSERT INTO deposits (position, amount) VALUES ($1, $2)"
        await self.execute(ctx.connection, insert, ctx.recorded.position, str(event.amount))

    async def reset(self, connection: Any) -> None:
        await self.execute(connection, "DELETE FROM deposits")

    async def create(self) -> None:
        async with self.store.transaction() as tx:
            create = "CREATE TABLE deposits (position BIGINT PRIMARY KEY, amount TEXT NOT NULL)"
            await self.execute(tx.connection, create)

    async def rows(self) -> list[tuple[int, str]]:
        async with self.store.transaction() as tx:
            select = "SELECT position, amount FROM deposits ORDER BY position"
            if self.sqlite:
                return [tuple(row) for row in tx.connection.execute(select)]
            return [tuple(row) for row in await tx.connection.fetch(select)]


async def deposit(store: EventStore, *amounts: int) -> None:
    account = Account("acc-1")
    account.open("Jane")
    for amount in amounts:
        account.deposit(Decimal(amount))
    await Repository(store, Account).save(account)


async def test_rows_and_checkpoint_commit_together(store: EventStore, backend: str) -> None:
    model = Deposits(store, backend)
    await model.create()
    await deposit(store, 10, 20, 30, 40, 50)  # positions 1 (opened) to 6; batches of 3
    model.fail_at = Decimal(40)
    with pytest.raises(RuntimeError, match="disk full"):
        await model.projection.catch_up(store)
    # the failed batch (positions 4-6) left neither rows nor a checkpoint behind
    assert await model.rows() == [(2, "10"), (3, "20")]
    assert await store.get_checkpoint("deposits") == 3

    model.fail_at = None
    assert await model.projection.catch_up(store) == 6
    assert await model.rows() == [(2, "10"), (3, "20"), (4, "30"), (5, "40"), (6, "50")]


async def test_rebuild_resets_the_rows_in_the_same_transaction(
    store: EventStore, backend: str
) -> None:
    model = Deposits(store, backend)
    await model.create()
    await deposit(store, 1, 2)
    await model.projection.catch_up(store)
    positions: list[int] = []
    assert await model.projection.rebuild(store, progress=lambda p, _: positions.append(p)) == 3
    assert await model.rows() == [(2, "1"), (3, "2")]
    assert positions == [0, 3]
    assert (await model.projection.status(store)).lag == 0
