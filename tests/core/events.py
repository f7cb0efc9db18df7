"""Event types shared by the core tests."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import msgspec

import tidings


@tidings.event("member.signed_up")
@dataclass(frozen=True)
class UserSignedUp:
    user_id: int
    email: str


@tidings.event("member.deleted")
@dataclass(frozen=True)
class UserDeleted:
    user_id: int


@tidings.event("order.placed")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: int
    customer: str


class Tier(enum.Enum):
    FREE = "free"
    PRO = "pro"


@dataclass(frozen=True)
class Address:
    street: str
    city: str


@tidings.event("account.upgraded")
@dataclass(frozen=True)
class AccountUpgraded:
    id: uuid.UUID
    at: datetime
    amount: Decimal
    tier: Tier
    address: Address
    tags: list[str] = field(default_factory=list)


@tidings.event("invoice.sent")
class InvoiceSent(msgspec.Struct, frozen=True):
    invoice_id: uuid.UUID
    total: Decimal
    sent_at: datetime
