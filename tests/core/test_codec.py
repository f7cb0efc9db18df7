"""Event names, the JSON codec and the message envelope."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pydantic
import pytest
from events import AccountUpgraded, Address, InvoiceSent, Tier, UserSignedUp

import tidings
from tidings import DecodeError, JsonCodec, Message, Registry


class Profile(pydantic.BaseModel):
    user_id: uuid.UUID
    joined: datetime
    balance: Decimal


def test_names_are_explicit_or_the_class_name() -> None:
    registry = Registry()

    @dataclass(frozen=True)
    class Plain:
        n: int

    registry.register(UserSignedUp, "member.signed_up")
    assert registry.name_of(UserSignedUp) == "member.signed_up"
    assert registry.name_of(Plain) == "Plain"
    assert registry.class_of("Plain") is Plain
    with pytest.raises(tidings.UnknownEventType, match="nope"):
        registry.class_of("nope")


def test_one_name_for_two_classes_is_refused() -> None:
    registry = Registry()

    class A:
        pass

    class B:
        pass

    registry.register(A, "same")
    with pytest.raises(ValueError, match="already used"):
        registry.register(B, "same")


def test_the_decorator_registers_in_the_default_registry() -> None:
    assert tidings.registry.class_of("member.signed_up") is UserSignedUp
    assert tidings.registry.name_of(AccountUpgraded) == "account.upgraded"


@pytest.mark.parametrize(
    "event",
    [
        AccountUpgraded(
            id=uuid.uuid4(),
            at=datetime(
                2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=5, minutes=30))
            ),
            amount=Decimal("1234.5600"),
            tier=Tier.PRO,
            address=Address("Main St 1", "Utrecht"),
            tags=["a", "b"],
        ),
        InvoiceSent(uuid.uuid4(), Decimal("0.10"), datetime.now(UTC)),
        Profile(user_id=uuid.uuid4(), joined=datetime.now(UTC), balance=Decimal("-3.50")),
    ],
    ids=["dataclass", "struct", "pydantic"],
)
def test_round_trips_are_exact(event: object) -> None:
    codec = JsonCodec()
    decoded = codec.decode(codec.encode(event), type(event))
    assert decoded == event
    assert type(decoded) is type(event)


def test_aware_datetimes_keep_their_offset() -> None:
    codec = JsonCodec()
    event = InvoiceSent(
        uuid.uuid4(), Decimal(1), datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=-7)))
    )
    decoded = codec.decode(codec.encode(event), InvoiceSent)
    assert decoded.sent_at.utcoffset() == timedelta(hours=-7)


def test_dicts_round_trip() -> None:
    codec = JsonCodec()
    data = {"a": 1, "b": [1, 2, {"c": None}], "d": "x"}
    assert codec.decode(codec.encode(data), dict) == data


def test_bad_bytes_raise_decode_error_naming_the_type() -> None:
    with pytest.raises(DecodeError, match="UserSignedUp") as raised:
        JsonCodec().decode(b"\x00garbage", UserSignedUp)
    assert raised.value.type_name == "UserSignedUp"
    assert "malformed" in raised.value.reason


def test_a_payload_that_does_not_fit_names_the_field() -> None:
    with pytest.raises(DecodeError) as raised:
        JsonCodec().decode(b'{"user_id": "one", "email": "x"}', UserSignedUp)
    assert raised.value.path == "$.user_id"
    assert "UserSignedUp" in str(raised.value)


def test_nested_errors_name_the_nested_field() -> None:
    payload = JsonCodec().encode(
        {
            "id": str(uuid.uuid4()),
            "at": "2026-01-01T00:00:00Z",
            "amount": "1",
            "tier": "gold",
            "address": {"street": "s", "city": "c"},
        }
    )
    with pytest.raises(DecodeError) as raised:
        JsonCodec().decode(payload, AccountUpgraded)
    assert raised.value.path == "$.tier"


def test_pydantic_errors_name_the_field() -> None:
    with pytest.raises(DecodeError) as raised:
        JsonCodec().decode(
            b'{"user_id": "x", "joined": "2026-01-01T00:00:00Z", "balance": 1}', Profile
        )
    assert raised.value.path == "$.user_id"


def test_convert_turns_dicts_into_events() -> None:
    codec = JsonCodec()
    assert codec.convert({"user_id": 1, "email": "x"}, UserSignedUp) == UserSignedUp(1, "x")
    with pytest.raises(DecodeError):
        codec.convert({"user_id": "x"}, UserSignedUp)


def test_unencodable_objects_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        JsonCodec().encode(object())


def test_message_ids_are_uuid7_and_sort_by_creation() -> None:
    ids = [Message("t", None).id for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_message_time_is_its_creation_time() -> None:
    before = time.time()
    message = Message("t", None)
    assert before <= message.timestamp <= time.time()
    assert message.time.tzinfo is UTC
    assert uuid.UUID(message.id).int >> 80 == int(message.timestamp * 1000)


def test_messages_are_immutable() -> None:
    message = Message("t", {"a": 1}, {"h": "v"}, "k")
    with pytest.raises(AttributeError):
        message.type = "other"  # type: ignore[misc]
    changed = message.replace(key="k2")
    assert changed.key == "k2"
    assert changed.id == message.id
    assert message.key == "k"
    assert message.with_headers({"x": "y"}).headers == {"h": "v", "x": "y"}


def test_restore_keeps_the_given_id_and_time() -> None:
    message = Message.restore("t", b"x", {}, None, "0190aaaa-0000-7000-8000-000000000000", 12.5)
    assert message.id == "0190aaaa-0000-7000-8000-000000000000"
    assert message.timestamp == 12.5


def test_a_struct_is_encoded_without_help() -> None:
    class S(msgspec.Struct):
        n: int

    assert JsonCodec().encode(S(1)) == b'{"n":1}'


_DEEP = b'{"user_id": 1, "email": "a@x", "deep": ' + b"[" * 1000 + b"]" * 1000 + b"}"


@pytest.mark.parametrize("into", [object, dict, UserSignedUp, Profile])
def test_hostile_nesting_is_a_decode_error(into: type) -> None:
    """1,000-deep JSON (2 KB) exhausts msgspec's recursion limit: a DecodeError, never a
    RecursionError that retry would take for a transient failure."""
    with pytest.raises(DecodeError) as raised:
        JsonCodec().decode(_DEEP, into)
    assert raised.value.type_name == into.__qualname__


def test_malformed_data_is_a_decode_error_naming_the_reason() -> None:
    bad = tidings.Malformed(b'{"user_id": 1}', "its headers are not a JSON object of strings")
    for into in (UserSignedUp, object):
        with pytest.raises(DecodeError, match="not a JSON object of strings"):
            JsonCodec().convert(bad, into)
