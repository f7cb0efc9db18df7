"""An event-sourced bank account: commands record events, Apply changes state, Rebuild replays.

The Go program::

    acc := NewAccount("acc-1")
    acc.Open("Ada"); acc.Deposit(100); acc.Withdraw(30)
    fmt.Println("balance:", acc.Balance)
    if err := acc.Withdraw(500); err != nil { fmt.Println("refused:", err) }
    store.Append(acc.ID, acc.Changes())
    events := store.Load("acc-1")
    rebuilt := Rebuild("acc-1", events)
    fmt.Printf("rebuilt from %d events: balance %v, version %d\\n",
        len(events), rebuilt.Balance, rebuilt.Version)

The account is the bank example's (``tidings/examples/bank/account.py``). Run:
``python -m examples.guide.account``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tidings.eventsourcing import EventStore, Repository
from tidings.examples.bank.account import Account, InsufficientFunds

__all__ = ["main"]


async def main() -> None:
    account = Account("acc-1")
    account.open("Ada")
    account.deposit(Decimal(100))
    account.withdraw(Decimal(30))
    print(f"balance: {account.balance}")
    try:
        account.withdraw(Decimal(500))
    except InsufficientFunds as refused:
        print(f"refused: {refused}")

    async with EventStore("memory://") as store:
        accounts = Repository(store, Account)
        await accounts.save(account)  # appends the three pending events
        events = [accounts.decode(recorded) async for recorded in store.read("acc-1")]
        rebuilt = Account.from_events("acc-1", events)  # Rebuild: no store needed
        print(
            f"rebuilt from {len(events)} events: balance {rebuilt.balance},"
            f" version {rebuilt.version}"
        )
        loaded = await accounts.load("acc-1")  # the same, in one call
        print(f"loaded: balance {loaded.balance}, version {loaded.version}")


if __name__ == "__main__":
    asyncio.run(main())
