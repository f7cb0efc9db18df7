"""Checked by mypy in test_typed_subscriptions.py, not run: each line marked ``# wrong`` must be a
type error, every other line must check."""

from __future__ import annotations

from dataclasses import dataclass

import tidings
from tidings import Message

bus = tidings.Bus()


@dataclass(frozen=True)
class UserSignedUp:
    user_id: int


@dataclass(frozen=True)
class OrderPlaced:
    order_id: int


@bus.subscribe(UserSignedUp)
async def welcome(event: UserSignedUp) -> None: ...


@bus.subscribe(UserSignedUp)
def audit(message: Message) -> None: ...


@bus.subscribe(UserSignedUp, batch_size=10)
async def count(events: list[UserSignedUp]) -> None: ...


@bus.subscribe(UserSignedUp)
def anything(event: object) -> None: ...


@bus.subscribe("user.*")
def by_topic(event: UserSignedUp) -> None: ...


bus.subscribe(UserSignedUp, lambda e: print(e.user_id))
bus.subscribe(UserSignedUp, welcome)


@bus.subscribe(UserSignedUp)  # wrong
async def mismatched(event: OrderPlaced) -> None: ...


bus.subscribe(UserSignedUp, lambda e: print(e.order_id))  # wrong


def ship(order: OrderPlaced) -> None: ...


bus.subscribe(UserSignedUp, ship)  # wrong


@bus.subscribe(UserSignedUp)  # wrong
async def wrong_batch(events: list[OrderPlaced]) -> None: ...
