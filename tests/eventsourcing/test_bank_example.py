"""The bank example runs, as a function and as ``python -m tidings.examples.bank``, and its read
model agrees with the accounts."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tidings.eventsourcing import Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.__main__ import main
from tidings.examples.bank.account import Account
from tidings.examples.bank.projections import balance_of, balances, create_table

ROOT = Path(__file__).parents[2]


async def test_the_example_prints_the_balance_and_the_read_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await main(f"sqlite:///{tmp_path / 'bank.db'}")
    out = capsys.readouterr().out
    assert "refused: cannot withdraw 500.00 from a balance of 70.00" in out
    assert "(Ada): balance 70.00, version 3" in out
    assert "read model: balance 70.00" in out


def test_the_example_runs_as_a_script(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    for _ in range(2):  # a second run adds an account to the same file
        done = subprocess.run(
            [sys.executable, "-m", "tidings.examples.bank", url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "read model: balance 70.00" in done.stdout


async def test_the_read_model_follows_every_account_and_survives_a_rebuild(
    tmp_path: Path,
) -> None:
    async with EventStore(f"sqlite:///{tmp_path / 'bank.db'}") as store:
        accounts = Repository(store, Account)
        for n in range(1, 4):
            account = Account(f"acc-{n}")
            account.open(f"owner {n}")
            account.deposit(Decimal(n * 10))
            account.withdraw(Decimal(n))
            await accounts.save(account)
        await create_table(store)
        await balances.catch_up(store)
        assert [await balance_of(store, f"acc-{n}") for n in range(1, 4)] == [9, 18, 27]
        await balances.rebuild(store)
        assert [await balance_of(store, f"acc-{n}") for n in range(1, 5)] == [9, 18, 27, None]
