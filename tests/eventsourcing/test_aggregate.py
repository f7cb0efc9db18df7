"""Aggregates: recording, pending events, and the state a snapshot stores."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from tidings.codec import JsonCodec
from tidings.errors import DecodeError
from tidings.eventsourcing import Aggregate
from tidings.eventsourcing.aggregate import restore_state, state_of
from tidings.examples.bank.account import (
    Account,
    AccountError,
    AccountOpened,
    InsufficientFunds,
    InvalidAmount,
    MoneyDeposited,
    MoneyWithdrawn,
)


def opened(balance: str = "0") -> Account:
    account = Account("account-1")
    account.open("Jane")
    if Decimal(balance):
        account.deposit(Decimal(balance))
    return account


def test_record_applies_the_event_and_queues_it() -> None:
    account = opened()
    account.deposit(Decimal("12.50"))
    assert account.balance == Decimal("12.50")
    assert account.version == 2
    assert account.pending_events == (AccountOpened("Jane"), MoneyDeposited(Decimal("12.50")))


def test_collect_returns_and_clears_the_pending_events_and_keeps_the_version() -> None:
    account = opened("5")
    assert account.collect() == [AccountOpened("Jane"), MoneyDeposited(Decimal(5))]
    assert account.pending_events == ()
    assert account.version == 2


@pytest.mark.parametrize("amount", [Decimal(0), Decimal("-1")])
def test_amounts_must_be_positive(amount: Decimal) -> None:
    account = opened("10")
    with pytest.raises(InvalidAmount, match="positive"):
        account.deposit(amount)
    with pytest.raises(ValueError, match="positive"):
        account.withdraw(amount)
    assert account.version == 2


def test_a_withdrawal_beyond_the_balance_is_refused_and_records_nothing() -> None:
    account = opened("10")
    with pytest.raises(InsufficientFunds):
        account.withdraw(Decimal("10.01"))
    account.withdraw(Decimal(10))
    assert account.balance == 0
    assert account.pending_events[-1] == MoneyWithdrawn(Decimal(10))


def test_commands_on_an_account_that_is_not_open_are_refused() -> None:
    with pytest.raises(AccountError, match="not open"):
        Account("account-2").deposit(Decimal(1))
    with pytest.raises(AccountError, match="already open"):
        opened().open("Joe")


def test_an_aggregate_without_apply_says_so() -> None:
    class Bare(Aggregate):
        pass

    with pytest.raises(NotImplementedError, match="Bare must define apply"):
        Bare("b-1").record(object())


def test_snapshot_state_round_trips_the_annotated_attributes_with_their_types() -> None:
    codec = JsonCodec()
    account = opened("10.25")
    restored = Account("account-1")
    restore_state(restored, state_of(account, codec), codec)
    assert (restored.owner, restored.balance) == ("Jane", Decimal("10.25"))
    assert isinstance(restored.balance, Decimal)


@dataclass(frozen=True)
class Tagged:
    tag: str


class Tags(Aggregate):
    tags: tuple[str, ...] = ()

    def apply(self, event: object) -> None:
        match event:
            case Tagged(tag=tag):
                self.tags = (*self.tags, tag)
                self.untracked = tag


def test_snapshot_state_refuses_attributes_without_annotations() -> None:
    tags = Tags("t-1")
    tags.record(Tagged("a"))
    with pytest.raises(TypeError, match=r"without annotations \(untracked\)"):
        state_of(tags, JsonCodec())


def test_restoring_a_state_of_another_shape_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="balance"):
        restore_state(Account("a"), b'{"owner": "x", "balance": [1]}', JsonCodec())


def test_from_events_rebuilds_an_aggregate_without_a_store() -> None:
    events = [AccountOpened("Jane"), MoneyDeposited(Decimal(10)), MoneyWithdrawn(Decimal(3))]
    account = Account.from_events("account-1", events)
    assert isinstance(account, Account)
    assert (account.id, account.owner, account.balance) == ("account-1", "Jane", Decimal(7))
    assert account.version == 3
    assert account.pending_events == (), "events it was built from are not new"
    account.deposit(Decimal(1))
    assert account.version == 4


def test_from_no_events_is_a_new_aggregate() -> None:
    account = Account.from_events("account-2", [])
    assert (account.version, account.owner) == (0, "")
