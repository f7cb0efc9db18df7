"""Projections: checkpoints, catch-up, following live appends, rebuilds and failures."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import pytest

from tidings.eventsourcing import Projection, ProjectionContext, Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account, AccountOpened, MoneyDeposited, MoneyWithdrawn


class Balances:
    """An in-memory read model: balance per account, and how often each event was seen."""

    def __init__(self, *, batch_size: int = 500, accounts: int = 0) -> None:
        self.balances: dict[str, Decimal] = {}
        self.all_seen = asyncio.Event()  # set once ``accounts`` accounts have a balance
        self.seen: list[int] = []
        self.projection = projection = Projection("balances", batch_size=batch_size)

        @projection.on(MoneyDeposited)
        def deposited(event: MoneyDeposited, ctx: ProjectionContext) -> None:
            self.seen.append(ctx.recorded.position)
            stream = ctx.recorded.stream
            self.balances[stream] = self.balances.get(stream, Decimal(0)) + event.amount
            if len(self.balances) == accounts:
                self.all_seen.set()

        @projection.on(MoneyWithdrawn)
        async def withdrawn(event: MoneyWithdrawn, ctx: ProjectionContext) -> None:
            self.seen.append(ctx.recorded.position)
            stream = ctx.recorded.stream
            self.balances[stream] = self.balances.get(stream, Decimal(0)) - event.amount

        @projection.reset
        def reset(connection: object) -> None:
            assert connection is None
            self.balances.clear()
            self.seen.clear()


async def save_account(store: EventStore, id: str, *moves: int) -> None:
    """Open ``id`` and deposit (positive) or withdraw (negative) each move."""
    account = Account(id)
    account.open("Jane")
    for move in moves:
        if move > 0:
            account.deposit(Decimal(move))
        else:
            account.withdraw(Decimal(-move))
    await Repository(store, Account).save(account)


async def test_catch_up_handles_every_stored_event_once_and_checkpoints(
    store: EventStore,
) -> None:
    await save_account(store, "a", 10, -3)
    await save_account(store, "b", 5)
    model = Balances(batch_size=2)
    assert await model.projection.catch_up(store) == 5
    assert model.balances == {"a": Decimal(7), "b": Decimal(5)}
    assert model.seen == [2, 3, 5]  # the AccountOpened events have no handler
    assert await store.get_checkpoint("balances") == 5

    await save_account(store, "c", 1)
    assert await model.projection.catch_up(store) == 7
    assert model.seen == [2, 3, 5, 7]


async def test_status_reports_the_checkpoint_against_the_head(store: EventStore) -> None:
    model = Balances()
    await save_account(store, "a", 10, 20)
    status = await model.projection.status(store)
    assert (status.name, status.position, status.head, status.lag) == ("balances", 0, 3, 3)
    await model.projection.catch_up(store)
    assert (await model.projection.status(store)).lag == 0


async def test_a_failing_handler_leaves_the_checkpoint_before_its_batch(
    store: EventStore,
) -> None:
    projection = Projection("fragile", batch_size=2)
    calls: list[int] = []
    failing = True

    @projection.on(MoneyDeposited)
    def deposited(event: MoneyDeposited, ctx: ProjectionContext) -> None:
        calls.append(ctx.recorded.position)
        if failing and event.amount == 13:
            raise RuntimeError("unlucky")

    await save_account(store, "a", 1, 2, 13, 4)  # positions 1 (opened) to 5; batches [1, 2], [3, 4]
    with pytest.raises(RuntimeError, match="unlucky"):
        await projection.catch_up(store)
    assert await store.get_checkpoint("fragile") == 2
    failing = False
    await projection.catch_up(store)
    assert calls == [2, 3, 4, 3, 4, 5]  # at least once: the failed batch is handled again


async def test_run_follows_events_appended_while_it_runs(store: EventStore) -> None:
    await save_account(store, "a", 1)
    model = Balances(accounts=4)
    runner = asyncio.create_task(model.projection.run(store))
    try:
        for n in range(2, 5):
            await save_account(store, f"acc-{n}", n)
        async with asyncio.timeout(10):  # a guard against hanging, not a timing assertion
            await model.all_seen.wait()
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    expected = {"a": 1, "acc-2": 2, "acc-3": 3, "acc-4": 4}
    assert model.balances == {id: Decimal(n) for id, n in expected.items()}


async def test_rebuild_resets_the_model_and_reports_progress(store: EventStore) -> None:
    for n in range(1, 6):
        await save_account(store, f"acc-{n}", n, -1)
    model = Balances(batch_size=4)
    await model.projection.catch_up(store)
    model.balances["acc-1"] = Decimal(999)  # a corrupted read model
    progress: list[tuple[int, int]] = []
    assert await model.projection.rebuild(store, progress=lambda *p: progress.append(p)) == 15
    assert model.balances == {f"acc-{n}": Decimal(n - 1) for n in range(1, 6)}
    assert len(model.seen) == 10
    assert progress == [(0, 15), (4, 15), (8, 15), (12, 15), (15, 15)]


def test_a_type_gets_one_handler() -> None:
    projection = Projection("p")
    projection.on(AccountOpened)(lambda event, ctx: None)
    with pytest.raises(ValueError, match=r"already handles 'bank\.account_opened'"):
        projection.on(AccountOpened)(lambda event, ctx: None)
