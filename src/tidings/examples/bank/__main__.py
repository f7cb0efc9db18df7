"""Run the bank example: ``python -m tidings.examples.bank [sqlite:///bank.db]``.

Opens an account, deposits and withdraws, saves, loads it again, shows a refused overdraft, and
brings the balances read model up to date.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal

from tidings.eventsourcing import Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account, InsufficientFunds
from tidings.examples.bank.projections import balance_of, balances, create_table
from tidings.message import new_id


async def main(url: str) -> None:
    async with EventStore(url) as store:
        accounts = Repository(store, Account, snapshot_every=50)

        account = Account(f"account-{new_id()[-12:]}")
        account.open("Ada")
        account.deposit(Decimal("100.00"))
        account.withdraw(Decimal("30.00"))
        await accounts.save(account)

        account = await accounts.load(account.id)
        try:
            account.withdraw(Decimal("500.00"))
        except InsufficientFunds as refused:
            print(f"refused: {refused}")
        print(
            f"{account.id} ({account.owner}): balance {account.balance}, version {account.version}"
        )

        await create_table(store)
        await balances.catch_up(store)
        print(f"read model: balance {await balance_of(store, account.id)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///bank.db"))
