"""A bank account whose balance is rebuilt from its events."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import tidings
from tidings.eventsourcing import Aggregate


class AccountError(Exception):
    """A command the account refuses; nothing was recorded."""


class InvalidAmount(AccountError, ValueError):
    """Amounts must be positive."""


class InsufficientFunds(AccountError):
    """A withdrawal larger than the balance."""


@tidings.event("bank.account_opened")
@dataclass(frozen=True, slots=True)
class AccountOpened:
    owner: str


@tidings.event("bank.money_deposited")
@dataclass(frozen=True, slots=True)
class MoneyDeposited:
    amount: Decimal


@tidings.event("bank.money_withdrawn")
@dataclass(frozen=True, slots=True)
class MoneyWithdrawn:
    amount: Decimal


class Account(Aggregate):
    owner: str = ""
    balance: Decimal = Decimal(0)

    def open(self, owner: str) -> None:
        if self.owner:
            raise AccountError(f"account {self.id} is already open")
        self.record(AccountOpened(owner))

    def deposit(self, amount: Decimal) -> None:
        self._check(amount)
        self.record(MoneyDeposited(amount))

    def withdraw(self, amount: Decimal) -> None:
        self._check(amount)
        if amount > self.balance:
            raise InsufficientFunds(f"cannot withdraw {amount} from a balance of {self.balance}")
        self.record(MoneyWithdrawn(amount))

    def _check(self, amount: Decimal) -> None:
        if not self.owner:
            raise AccountError(f"account {self.id} is not open")
        if amount <= 0:
            raise InvalidAmount(f"amounts must be positive, got {amount}")

    def apply(self, event: object) -> None:
        match event:
            case AccountOpened(owner=owner):
                self.owner = owner
            case MoneyDeposited(amount=amount):
                self.balance += amount
            case MoneyWithdrawn(amount=amount):
                self.balance -= amount
