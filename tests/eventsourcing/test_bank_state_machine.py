"""A model-based test of the bank account on every store.

Hypothesis drives one account with deposits, refused and accepted withdrawals, invalid amounts and
concurrent commands from two repositories (one of them snapshotting); after every step the account
loaded from the store must match a plain model: same balance, same number of events, no update
lost. Of two concurrent saves from the same version exactly one must raise ConcurrencyError; the
loser loads again and retries its command, as an application would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tidings.errors import ConcurrencyError
from tidings.eventsourcing import Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account, InsufficientFunds, InvalidAmount

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(500), places=2)
not_positive = st.decimals(max_value=Decimal(0), places=2, allow_nan=False, allow_infinity=False)
# A move deposits a positive amount or withdraws a negative one.
moves = st.tuples(st.booleans(), amounts).map(lambda m: m[1] if m[0] else -m[1])


def perform(account: Account, move: Decimal) -> None:
    if move > 0:
        account.deposit(move)
    else:
        account.withdraw(-move)


class AccountMachine(RuleBasedStateMachine):
    """One account per example; ``runner`` and ``store`` are set by the test on a subclass."""

    runner: ClassVar[asyncio.Runner]
    store: ClassVar[EventStore]

    def __init__(self) -> None:
        super().__init__()
        self.run = self.runner.run
        self.id = f"account-{uuid.uuid4().hex}"
        self.repos = (
            Repository(self.store, Account),
            Repository(self.store, Account, snapshot_every=3),
        )
        self.balance = Decimal(0)  # the model
        self.events = 0

    @initialize()
    def open(self) -> None:
        account = Account(self.id)
        account.open("Jane")
        self.run(self.repos[0].save(account))
        self.events = 1

    @rule(move=moves, second=st.booleans())
    def move(self, move: Decimal, second: bool) -> None:
        repo = self.repos[second]
        account = self.run(repo.load(self.id))
        if self.balance + move < 0:
            with pytest.raises(InsufficientFunds):
                perform(account, move)
            assert account.pending_events == ()
            return
        perform(account, move)
        self.run(repo.save(account))
        self.balance += move
        self.events += 1

    @rule(amount=not_positive)
    def invalid_amount(self, amount: Decimal) -> None:
        account = self.run(self.repos[0].load(self.id))
        with pytest.raises(InvalidAmount):
            account.deposit(amount)
        with pytest.raises(InvalidAmount):
            account.withdraw(amount)

    @rule(moves=st.tuples(moves, moves))
    def concurrent_moves(self, moves: tuple[Decimal, Decimal]) -> None:
        self.run(self._concurrently(moves))

    async def _concurrently(self, moves: tuple[Decimal, Decimal]) -> None:
        loaded = await asyncio.gather(*(repo.load(self.id) for repo in self.repos))
        accepted: list[int] = []
        for n, (account, move) in enumerate(zip(loaded, moves, strict=True)):
            if self.balance + move >= 0:
                perform(account, move)
                accepted.append(n)
        saves = [self.repos[n].save(loaded[n]) for n in accepted]
        results = await asyncio.gather(*saves, return_exceptions=True)
        for result in results:
            assert result is None or isinstance(result, ConcurrencyError), result
        conflicts = [n for n, result in zip(accepted, results, strict=True) if result is not None]
        assert len(conflicts) == (1 if len(accepted) == 2 else 0)
        for n in accepted:
            if n not in conflicts:
                self.balance += moves[n]
                self.events += 1
        for n in conflicts:  # the loser retries its command on the current state
            account = await self.repos[n].load(self.id)
            if self.balance + moves[n] < 0:
                with pytest.raises(InsufficientFunds):
                    perform(account, moves[n])
                continue
            perform(account, moves[n])
            await self.repos[n].save(account)
            self.balance += moves[n]
            self.events += 1

    @invariant()
    def stored_account_matches_the_model(self) -> None:
        for repo in self.repos:
            account = self.run(repo.load(self.id))
            assert (account.balance, account.version) == (self.balance, self.events)
        assert self.run(self.store.stream_info(self.id)).version == self.events


def test_the_account_matches_its_model(
    store_opener: Callable[[], AbstractAsyncContextManager[EventStore]],
) -> None:
    with asyncio.Runner() as runner:
        opened = store_opener()

        class OnThisStore(AccountMachine):
            pass

        OnThisStore.runner = runner
        OnThisStore.store = runner.run(opened.__aenter__())
        try:
            run_state_machine_as_test(
                OnThisStore,
                settings=settings(
                    max_examples=12,
                    stateful_step_count=12,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        finally:
            runner.run(opened.__aexit__(None, None, None))
