"""A read model of every account's balance, kept in the store's own SQLite database.

The projection is transactional: each batch's rows and its checkpoint commit together, so every
event counts exactly once even when the process dies halfway. See it from the command line::

    tidings projections status --url sqlite:///bank.db \
        --app tidings.examples.bank.projections:projections
    tidings projections rebuild bank.balances \
        --app tidings.examples.bank.projections:projections ...
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from tidings.eventsourcing import Projection, ProjectionContext
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import AccountOpened, MoneyDeposited, MoneyWithdrawn

balances = Projection("bank.balances", transactional=True)
projections = [balances]

_TABLE = """CREATE TABLE IF NOT EXISTS bank_balances (
    account TEXT PRIMARY KEY, owner TEXT NOT NULL, balance TEXT NOT NULL)"""


@balances.on(AccountOpened)
def opened(event: AccountOpened, ctx: ProjectionContext) -> None:
    ctx.connection.execute(
        "INSERT INTO bank_balances VALUES (?, ?, '0')", (ctx.recorded.stream, event.owner)
    )


@balances.on(MoneyDeposited)
def deposited(event: MoneyDeposited, ctx: ProjectionContext) -> None:
    _add(ctx.connection, ctx.recorded.stream, event.amount)


@balances.on(MoneyWithdrawn)
def withdrawn(event: MoneyWithdrawn, ctx: ProjectionContext) -> None:
    _add(ctx.connection, ctx.recorded.stream, -event.amount)


@balances.reset
def reset(connection: sqlite3.Connection) -> None:
    connection.execute(_TABLE)
    connection.execute("DELETE FROM bank_balances")


def _add(connection: sqlite3.Connection, account: str, amount: Decimal) -> None:
    # Decimal as TEXT: SQLite's numbers are binary floating point.
    (balance,) = connection.execute(
        "SELECT balance FROM bank_balances WHERE account = ?", (account,)
    ).fetchone()
    connection.execute(
        "UPDATE bank_balances SET balance = ? WHERE account = ?",
        (str(Decimal(balance) + amount), account),
    )


async def create_table(store: EventStore) -> None:
    async with store.transaction() as tx:
        tx.connection.execute(_TABLE)


async def balance_of(store: EventStore, account: str) -> Decimal | None:
    """The balance the read model holds for ``account`` (None when it has no row)."""
    async with store.transaction() as tx:
        row = tx.connection.execute(
            "SELECT balance FROM bank_balances WHERE account = ?", (account,)
        ).fetchone()
    return None if row is None else Decimal(row[0])
