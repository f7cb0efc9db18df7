"""The bank part of ``tidings demo``: an account saved to SQLite, then rebuilt by a new process.

``run_bank_demo`` opens an account, deposits and withdraws, shows a refused overdraft, saves, and
then starts a separate Python process (running :func:`print_account`) that loads the account
from the same store and reports the balance rebuilt from its events: what was saved
survives the process that saved it. (The account here is a compact copy of ``examples/bank``,
kept in the package so that the demo runs from an installed wheel too.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from tidings.cli.store import write_json
from tidings.codec import Registry
from tidings.eventsourcing import Aggregate, Repository
from tidings.eventsourcing.store import EventStore
from tidings.message import new_id

__all__ = ["default_demo_url", "print_account", "run_bank_demo"]


@dataclass(frozen=True, slots=True)
class Opened:
    owner: str


@dataclass(frozen=True, slots=True)
class Deposited:
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Withdrawn:
    amount: Decimal


# A registry of its own keeps the demo's classes apart from an application's own bank events.
_names = Registry()
_names.register(Opened, "bank.account_opened")
_names.register(Deposited, "bank.money_deposited")
_names.register(Withdrawn, "bank.money_withdrawn")


class InsufficientFunds(Exception):
    pass


class Account(Aggregate):
    owner: str = ""
    balance: Decimal = Decimal(0)

    def withdraw(self, amount: Decimal) -> None:
        if amount > self.balance:
            raise InsufficientFunds(f"cannot withdraw {amount}: the balance is {self.balance}")
        self.record(Withdrawn(amount))

    def apply(self, event: object) -> None:
        match event:
            case Opened(owner=owner):
                self.owner = owner
            case Deposited(amount=amount):
                self.balance += amount
            case Withdrawn(amount=amount):
                self.balance -= amount


_CHILD = "import sys; from tidings.cli.demo_bank import print_account; print_account(*sys.argv[1:])"


def default_demo_url() -> str:
    """A SQLite file in the system's temporary directory, created on first use."""
    directory = Path(tempfile.gettempdir()) / "tidings-demo"
    directory.mkdir(exist_ok=True)
    return f"sqlite:///{directory / 'bank.db'}"


def run_bank_demo(console: Console, url: str | None = None) -> None:
    """Run the demo, printing to ``console``. Raises RuntimeError if the second process fails."""
    url = url or default_demo_url()
    account_id = f"account-{new_id()[-12:]}"
    console.rule("[bold]bank account: event sourcing")
    asyncio.run(_write(console, url, account_id))
    console.print("[dim]starting a new Python process that loads the account from the store…[/]")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, url, account_id],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the process loading {account_id} failed:\n{child.stderr}")
    loaded = msgspec.json.decode(child.stdout)
    console.print(
        Panel(
            f"{loaded['owner']}'s balance: [bold green]{loaded['balance']}[/] "
            f"after {loaded['version']} events, in process {loaded['pid']} (this is {os.getpid()})",
            title=f"{account_id} rebuilt from its events",
        )
    )
    console.print(f"[dim]inspect it: tidings store read {account_id} --url {escape(url)}[/]")


async def _write(console: Console, url: str, account_id: str) -> None:
    async with EventStore(url) as store:
        accounts = Repository(store, Account, registry=_names)
        account = Account(account_id)
        account.record(Opened("Ada"))
        account.record(Deposited(Decimal("100.00")))
        account.withdraw(Decimal("30.00"))
        await accounts.save(account)
        console.print(f"opened {account_id}, deposited 100.00, withdrew 30.00: saved 3 events")

        account = await accounts.load(account_id)
        try:
            account.withdraw(Decimal("500.00"))
        except InsufficientFunds as refused:
            console.print(f"[yellow]refused:[/] {refused}")
        account.record(Deposited(Decimal("12.50")))
        await accounts.save(account)
        console.print(f"deposited 12.50: balance {account.balance}, version {account.version}")


async def _load(url: str, account_id: str) -> dict[str, Any]:
    async with EventStore(url) as store:
        account = await Repository(store, Account, registry=_names).load(account_id)
    return {
        "owner": account.owner,
        "balance": str(account.balance),
        "version": account.version,
        "pid": os.getpid(),
    }


def print_account(url: str, account_id: str) -> None:
    """What the second process runs: load the account and print it as JSON."""
    write_json(asyncio.run(_load(url, account_id)))
