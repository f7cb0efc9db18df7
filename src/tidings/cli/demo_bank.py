"""The bank part of ``tidings demo``: an account saved to SQLite, then rebuilt by a new process.

``run_bank_demo`` opens an account, deposits and withdraws, shows a refused overdraft, saves, and
then starts a separate Python process (running :func:`print_account`) that loads the account
from the same store and reports the balance rebuilt from its events: what was saved
survives the process that saved it. The account is :mod:`tidings.examples.bank`'s.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from tidings.cli.store import write_json
from tidings.eventsourcing import Repository
from tidings.eventsourcing.store import EventStore
from tidings.message import new_id

__all__ = ["default_demo_url", "print_account", "run_bank_demo"]


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
    from tidings.examples.bank.account import Account, InsufficientFunds  # see _load

    async with EventStore(url) as store:
        accounts = Repository(store, Account)
        account = Account(account_id)
        account.open("Ada")
        account.deposit(Decimal("100.00"))
        account.withdraw(Decimal("30.00"))
        await accounts.save(account)
        console.print(f"opened {account_id}, deposited 100.00, withdrew 30.00: saved 3 events")

        account = await accounts.load(account_id)
        try:
            account.withdraw(Decimal("500.00"))
        except InsufficientFunds as refused:
            console.print(f"[yellow]refused:[/] {refused}")
        account.deposit(Decimal("12.50"))
        await accounts.save(account)
        console.print(f"deposited 12.50: balance {account.balance}, version {account.version}")


async def _load(url: str, account_id: str) -> dict[str, Any]:
    # imported here: importing it registers the bank's events, which other commands must not see
    from tidings.examples.bank.account import Account

    async with EventStore(url) as store:
        account = await Repository(store, Account).load(account_id)
    return {
        "owner": account.owner,
        "balance": str(account.balance),
        "version": account.version,
        "pid": os.getpid(),
    }


def print_account(url: str, account_id: str) -> None:
    """What the second process runs: load the account and print it as JSON."""
    write_json(asyncio.run(_load(url, account_id)))
