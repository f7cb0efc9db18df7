"""The bank's events on a bus: the outbox relay publishes what the store holds, two services react.

An activity log takes every bank event (the pattern ``bank.*``, the messages as they come); an
alert service looks at withdrawals only and keeps the large ones. ``tidings run
tidings.examples.bank.notices:create_bus`` runs them as a worker; ``tidings asyncapi
tidings.examples.bank.notices:create_bus`` describes the bus.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import tidings
from tidings.examples.bank.account import MoneyWithdrawn

__all__ = ["ACTIVITY_GROUP", "ALERTS_GROUP", "LARGE", "Notices", "build", "create_bus"]

ACTIVITY_GROUP = "bank.activity"
ALERTS_GROUP = "bank.alerts"
LARGE = Decimal(1000)
"""Withdrawals of this much or more are alerts."""


class Notices:
    """What the two services saw."""

    def __init__(self) -> None:
        self.activity: list[tuple[str, str]] = []
        """(account, event name) of every bank event, in the order handled."""
        self.alerts: list[Decimal] = []
        """The amount of every large withdrawal."""

    def record(self, message: tidings.Message) -> None:
        self.activity.append((message.key or "", message.type))

    def alert(self, event: MoneyWithdrawn) -> None:
        if event.amount >= LARGE:
            self.alerts.append(event.amount)


def build(url: str | None = None) -> tuple[tidings.Bus, Notices]:
    """A bus for ``url`` (in memory when None) with both services subscribed, not yet started.

    Give ``OutboxRelay(store, bus.transport)`` the bus's transport to publish the store's events.
    """
    bus = tidings.Bus(url)
    notices = Notices()
    bus.subscribe("bank.*", notices.record, group=ACTIVITY_GROUP)
    bus.subscribe(MoneyWithdrawn, notices.alert, group=ALERTS_GROUP)
    return bus, notices


def create_bus() -> tidings.Bus:
    """The bus of a bank worker, on ``$TIDINGS_URL`` (default: ``.tidings/bank-bus.db``)."""
    Path(".tidings").mkdir(exist_ok=True)
    return build(os.environ.get("TIDINGS_URL", "sqlite:///.tidings/bank-bus.db"))[0]
