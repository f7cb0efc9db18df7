"""``tidings.asyncapi.document``: valid AsyncAPI 3.0.0 for the examples, credentials never shown,
event classes of every kind described by their JSON Schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pydantic
import pytest
from asyncapi_checks import assert_valid, resolve

import tidings
from tidings.asyncapi import document

ROOT = Path(__file__).parents[2]


def generated(app: str, url: str, cwd: Path) -> dict[str, Any]:
    """``tidings asyncapi APP`` in a fresh interpreter: the registry holds the app's events only."""
    done = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "asyncapi", app],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TIDINGS_URL": url},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def receivers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The receive operations by group."""
    ops = doc["operations"].values()
    return {op["x-tidings-group"]: op for op in ops if op["action"] == "receive"}


def test_the_signup_document_sends_the_event_and_receives_it_in_three_groups(
    tmp_path: Path,
) -> None:
    doc = generated("tidings.examples.signup.app:create_bus", "nats://127.0.0.1:4222", tmp_path)

    assert_valid(doc)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"] == {
        "nats": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "NATS JetStream"}
    }
    assert list(doc["channels"]) == ["user.signed_up"]
    sends = [op for op in doc["operations"].values() if op["action"] == "send"]
    assert sends == [
        {
            "action": "send",
            "channel": {"$ref": "#/channels/user.signed_up"},
            "messages": [{"$ref": "#/channels/user.signed_up/messages/user.signed_up"}],
            "summary": "Publishes UserSignedUp.",
        }
    ]
    assert sorted(receivers(doc)) == ["signup.audit", "signup.email", "signup.preferences"]
    message = resolve(doc, "#/components/messages/user.signed_up")
    assert message["name"] == "user.signed_up"
    assert message["contentType"] == "application/json"
    payload = resolve(doc, message["payload"]["$ref"])
    assert payload["required"] == ["user_id", "email", "name", "signed_up_at"]
    assert payload["properties"]["user_id"] == {"type": "integer"}
    headers = resolve(doc, message["headers"]["$ref"])
    assert {"tidings-id", "correlation-id", "traceparent"} <= set(headers["properties"])


def test_the_bank_document_has_a_pattern_channel_and_kafka_group_bindings(
    tmp_path: Path,
) -> None:
    doc = generated("tidings.examples.bank.notices:create_bus", "kafka://127.0.0.1:9092", tmp_path)

    assert_valid(doc)
    names = ["bank.account_opened", "bank.money_deposited", "bank.money_withdrawn"]
    pattern = doc["channels"]["bank._any_"]
    assert pattern["address"] == "bank.*"
    assert pattern["x-tidings-pattern"] is True
    assert list(pattern["messages"]) == names
    sent = [op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"]
    assert sent == [f"#/channels/{name}" for name in names]
    activity, alerts = receivers(doc)["bank.activity"], receivers(doc)["bank.alerts"]
    assert activity["channel"] == {"$ref": "#/channels/bank._any_"}
    assert len(activity["messages"]) == 3
    assert alerts["messages"] == [
        {"$ref": "#/channels/bank.money_withdrawn/messages/bank.money_withdrawn"}
    ]
    assert alerts["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["bank.alerts"]}
    amount = resolve(doc, "#/components/schemas/MoneyWithdrawn")["properties"]["amount"]
    assert amount == {"type": "string", "format": "decimal"}


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("amqp://alice:s3cret@127.0.0.1:5672/shop", ["127.0.0.1:5672"]),
        (
            "nats://alice:s3cret@10.0.0.1:4222,alice:s3cret@10.0.0.2:4222",
            ["10.0.0.1:4222", "10.0.0.2:4222"],
        ),
        ("kafka://alice:s3cret@127.0.0.1:9092?tls=true", ["127.0.0.1:9092"]),
        ("postgresql://alice:s3cret@127.0.0.1:5432/test?sslpassword=s3cret", ["127.0.0.1:5432"]),
        ("redis://:s3cret@127.0.0.1:6379/0", ["127.0.0.1:6379"]),
    ],
)
def test_user_names_and_passwords_never_appear(url: str, hosts: list[str]) -> None:
    bus = tidings.Bus(url, registry=tidings.Registry())
    bus.subscribe("orders.placed", print, group="alice-reads")

    doc = document(bus)

    assert_valid(doc)
    text = json.dumps(doc)
    assert "s3cret" not in text
    assert "alice" not in text.replace("alice-reads", "")
    assert [server["host"] for server in doc["servers"].values()] == hosts
    assert "s3cret" not in repr(bus.url)


@dataclass(frozen=True)
class Shipped:
    """An order left the warehouse."""

    order: int
    parcel: tuple[str, int]


class Cancelled(msgspec.Struct, frozen=True):
    order: int
    reason: str | None = None


class Address(pydantic.BaseModel):
    city: str


class Moved(pydantic.BaseModel):
    customer: int
    to: Address


class Opaque:
    """Not a dataclass, Struct or model: nothing describes it."""


def test_every_kind_of_event_class_gets_its_schema() -> None:
    names = tidings.Registry()
    for cls in (Shipped, Cancelled, Moved, Opaque):
        names.register(cls, f"shop.{cls.__name__.lower()}")
    bus = tidings.Bus(registry=names)
    bus.subscribe("shop.>", print, group="everything")
    bus.subscribe("shop.audit", print, group="audit")

    doc = document(bus, title="shop", version="2.1.0", description="The shop's events.")

    assert_valid(doc)
    assert "servers" not in doc  # in process: nothing to connect to
    assert doc["info"] == {"title": "shop", "version": "2.1.0", "description": "The shop's events."}
    schemas = doc["components"]["schemas"]
    assert schemas["Shipped"]["description"] == "An order left the warehouse."
    assert schemas["Shipped"]["properties"]["parcel"] == {  # a tuple, as draft 07 writes it
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": [{"type": "string"}, {"type": "integer"}],
        "additionalItems": False,
    }
    assert schemas["Cancelled"]["required"] == ["order"]
    assert schemas["Moved"]["properties"]["to"] == {"$ref": "#/components/schemas/Address"}
    assert schemas["Address"]["properties"]["city"]["type"] == "string"
    opaque = doc["components"]["messages"]["shop.opaque"]["payload"]
    assert opaque == {"description": "Opaque: no JSON Schema could be generated"}
    everything = receivers(doc)["everything"]
    assert doc["channels"]["shop._rest_"]["address"] == "shop.>"
    assert len(everything["messages"]) == 4
    assert "messages" not in receivers(doc)["audit"]  # a topic no known event is named after


def test_the_events_argument_names_what_the_application_sends() -> None:
    names = tidings.Registry()
    names.register(Shipped, "shop.shipped")
    names.register(Cancelled, "shop.cancelled")
    bus = tidings.Bus(registry=names)

    doc = document(bus, events=[Shipped])

    assert_valid(doc)
    assert list(doc["operations"]) == ["send.shop.shipped"]
    assert list(doc["components"]["messages"]) == ["shop.shipped"]


def test_a_pydantic_model_named_like_another_class_is_refused() -> None:
    names = tidings.Registry()
    names.register(Moved, "shop.moved")  # holds the pydantic model Address
    names.register(msgspec.defstruct("Address", [("street", str)]), "shop.address")

    with pytest.raises(ValueError, match="'Address'"):
        document(tidings.Bus(registry=names))


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        (
            "sqlite:///.tidings/app.db",
            {
                "sqlite": {
                    "host": "localhost",
                    "pathname": ".tidings/app.db",
                    "protocol": "sqlite",
                    "description": "The embedded SQLite file, on this machine.",
                }
            },
        ),
        (
            "postgresql://app@127.0.0.1:5432/shop?schema=events",
            {
                "postgresql": {
                    "host": "127.0.0.1:5432",
                    "protocol": "postgresql",
                    "description": "PostgreSQL",
                    "pathname": "/shop",
                }
            },
        ),
        ("memory://", {}),
    ],
)
def test_servers_say_where_the_bus_connects(url: str, servers: dict[str, Any]) -> None:
    doc = document(tidings.Bus(url, registry=tidings.Registry()))

    assert_valid(doc)
    assert doc.get("servers", {}) == servers
