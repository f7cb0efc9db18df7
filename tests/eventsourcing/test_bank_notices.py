"""The bank's bus: the outbox relay publishes the stored events, the activity log takes them all
through its pattern and the alert service the large withdrawals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tidings.eventsourcing import OutboxRelay, Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account
from tidings.examples.bank.notices import build


async def test_relayed_events_reach_the_activity_log_and_large_withdrawals_the_alerts(
    tmp_path: Path,
) -> None:
    bus, notices = build()
    async with EventStore(f"sqlite:///{tmp_path / 'bank.db'}") as store, bus:
        account = Account("account-1")
        account.open("Ada")
        account.deposit(Decimal("2500.00"))
        account.withdraw(Decimal("1500.00"))
        account.withdraw(Decimal("20.00"))
        await Repository(store, Account).save(account)

        assert await OutboxRelay(store, bus.transport).relay_pending() == 4
        await bus.drain()

    assert notices.activity == [
        ("account-1", "bank.account_opened"),
        ("account-1", "bank.money_deposited"),
        ("account-1", "bank.money_withdrawn"),
        ("account-1", "bank.money_withdrawn"),
    ]
    assert notices.alerts == [Decimal("1500.00")]
