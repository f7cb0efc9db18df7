"""Upcasters and the mapping between event objects and stored events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from tidings.codec import Registry
from tidings.errors import DecodeError, UnknownEventType
from tidings.eventsourcing import Upcasters
from tidings.eventsourcing.store import RecordedEvent
from tidings.eventsourcing.upcasting import EventMapper, schema_version_of


@dataclass(frozen=True)
class Opened:
    __schema_version__: ClassVar[int] = 3
    holder: str
    currency: str


def recorded(data: bytes, schema_version: int, type: str = "opened") -> RecordedEvent:
    return RecordedEvent(
        stream="a-1",
        version=1,
        position=1,
        type=type,
        data=data,
        id="id-1",
        metadata={},
        schema_version=schema_version,
        recorded_at=datetime.now(UTC),
    )


@pytest.fixture
def mapper() -> EventMapper:
    names = Registry()
    names.register(Opened, "opened")
    upcasters = Upcasters()

    @upcasters.register("opened", from_version=1)
    def owner_to_holder(data: dict[str, Any]) -> dict[str, Any]:
        return {"holder": data["owner"]}

    @upcasters.register("opened", from_version=2)
    def add_currency(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": "EUR"}

    return EventMapper(registry=names, upcasters=upcasters)


def test_new_events_carry_the_name_payload_and_current_schema_version(
    mapper: EventMapper,
) -> None:
    new = mapper.to_new_event(Opened("Jane", "USD"), {"correlation-id": "c-1"})
    assert (new.type, new.schema_version, dict(new.metadata)) == (
        "opened",
        3,
        {"correlation-id": "c-1"},
    )
    assert mapper.to_event(recorded(new.data, 3)) == Opened("Jane", "USD")


@pytest.mark.parametrize(
    ("payload", "version"),
    [(b'{"owner": "Jane"}', 1), (b'{"holder": "Jane"}', 2)],
)
def test_old_payloads_go_through_every_later_upcaster(
    mapper: EventMapper, payload: bytes, version: int
) -> None:
    assert mapper.to_event(recorded(payload, version)) == Opened("Jane", "EUR")


def test_current_data_re_encodes_old_payloads_and_passes_unknown_names_through(
    mapper: EventMapper,
) -> None:
    assert mapper.to_event(recorded(mapper.current_data(recorded(b'{"owner":"J"}', 1)), 3)) == (
        Opened("J", "EUR")
    )
    assert mapper.current_data(recorded(b"[1]", 1, type="elsewhere")) == b"[1]"


def test_a_missing_step_names_the_event_and_the_version() -> None:
    names = Registry()
    names.register(Opened, "opened")
    with pytest.raises(DecodeError, match=r"opened.*no upcaster from schema version 1 to 2"):
        EventMapper(registry=names).to_event(recorded(b'{"owner": "Jane"}', 1))


def test_a_payload_newer_than_the_class_is_refused(mapper: EventMapper) -> None:
    with pytest.raises(DecodeError, match="newer than Opened's 3"):
        mapper.to_event(recorded(b"{}", 4))


def test_an_unregistered_name_raises_unknown_event_type(mapper: EventMapper) -> None:
    with pytest.raises(UnknownEventType):
        mapper.to_event(recorded(b"{}", 1, type="nobody"))


def test_two_upcasters_for_one_step_are_refused() -> None:
    upcasters = Upcasters()
    upcasters.add("opened", 1, dict)
    with pytest.raises(ValueError, match="from version 1 exists"):
        upcasters.add("opened", 1, dict)


def test_schema_version_must_be_a_positive_int() -> None:
    class Bad:
        __schema_version__ = 0

    assert schema_version_of(Opened) == 3
    with pytest.raises(TypeError, match="must be an int >= 1"):
        schema_version_of(Bad)
