"""The one wire -> Message decoding: what a foreign producer's envelope falls back to."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.message import Malformed, Message
from tidings.transports.kit.wire import ATTEMPT, ID, KEY, TIME, TYPE, from_wire, to_wire


def test_round_trip() -> None:
    sent = Message("user.signed_up", b'{"n":1}', {"tenant": "a"}, "user-1")
    received, attempt = from_wire("users", sent.data, to_wire(sent))
    assert received == sent
    assert received.timestamp == sent.timestamp
    assert attempt == 1


def test_bytes_headers_round_trip() -> None:
    sent = Message("user.signed_up", b"{}", {"tenant": "a"}, "user-1")
    raw = {k.encode(): v.encode() for k, v in to_wire(sent).items()}
    received, _ = from_wire("users", sent.data, raw)
    assert received == sent


def test_no_envelope_is_the_topic_with_a_fresh_id() -> None:
    before = time.time()
    message, attempt = from_wire("orders", b"{}", None)
    assert (message.type, message.headers, message.key, attempt) == ("orders", {}, None, 1)
    assert message.id
    assert message.timestamp >= before


@pytest.mark.parametrize(
    "garbage",
    [b"xx", b"", b"nan", b"inf", b"-5", b"1e300", b"\xff\xfe", "12 o'clock", 10**400, object()],
)
def test_garbage_time_is_now(garbage: object) -> None:
    before = time.time()
    message, _ = from_wire("t", b"{}", {TIME: garbage, TYPE: "kind"})
    assert message.type == "kind"
    assert message.timestamp >= before
    message.time  # noqa: B018  # a datetime can be made of it


@pytest.mark.parametrize("garbage", [b"zz", b"", "-3", b"0", "1.5", b"\xff", "9" * 5000, None])
def test_garbage_attempt_is_one(garbage: object) -> None:
    assert from_wire("t", b"", {ATTEMPT: garbage})[1] == 1


def test_attempt_header_counts_unless_the_broker_counts() -> None:
    assert from_wire("t", b"", {ATTEMPT: b"3"})[1] == 3
    assert from_wire("t", b"", {ATTEMPT: 4})[1] == 4
    assert from_wire("t", b"", {ATTEMPT: b"3"}, 7)[1] == 7
    assert from_wire("t", b"", {}, 0)[1] == 1, "never below 1"


@pytest.mark.parametrize("garbage", [b"\xff\xfe", b"", "", "a\x00b", 17])
def test_garbage_type_is_the_topic_and_garbage_id_a_fresh_one(garbage: object) -> None:
    message, _ = from_wire("orders", b"{}", {TYPE: garbage, ID: garbage})
    assert message.type == "orders"
    assert message.id
    assert message.id != garbage


def test_key_is_decoded_with_replacement_or_dropped() -> None:
    assert from_wire("t", b"", {KEY: b"k\xff"})[0].key == "k\ufffd"
    assert from_wire("t", b"", {KEY: "a\x00b"})[0].key is None


def test_user_headers_that_are_not_utf8_are_replaced() -> None:
    message, _ = from_wire("t", b"", {b"h": b"\xff\xfe", b"\xffname": "v", "n": 5, "gone": None})
    assert dict(message.headers) == {"h": "\ufffd\ufffd", "\ufffdname": "v", "n": "5"}


def test_payload_of_any_type_becomes_bytes() -> None:
    assert from_wire("t", None, None)[0].data == b""
    assert from_wire("t", bytearray(b"ab"), None)[0].data == b"ab"
    assert from_wire("t", "text", None)[0].data == b"text"


def test_json_headers() -> None:
    message, _ = from_wire("t", b"{}", {TYPE: "kind"}, json_headers=b'{"tenant":"a"}')
    assert (message.type, dict(message.headers), message.data) == ("kind", {"tenant": "a"}, b"{}")


@pytest.mark.parametrize(
    "garbage", [b"\xff\xfe", b"not json", b"[1,2]", b'{"n": 1}', "{", 42, b'{"a":' * 2000]
)
def test_unreadable_json_headers_make_the_data_malformed(garbage: object) -> None:
    message, attempt = from_wire("t", b'{"n":1}', {TYPE: "kind"}, 2, json_headers=garbage)
    assert (message.type, attempt) == ("kind", 2)
    assert isinstance(message.data, Malformed)
    assert message.data.raw == b'{"n":1}'
    assert "not a JSON object of strings" in message.data.reason


_anything = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.text(max_size=40),
    st.integers(),
    st.floats(),
)
_names = st.one_of(st.sampled_from([ID, TYPE, TIME, KEY, ATTEMPT]), st.binary(), st.text())


@given(
    topic=st.text(min_size=1),
    data=_anything,
    headers=st.dictionaries(_names, _anything, max_size=8),
    attempt=st.one_of(st.none(), st.integers()),
    json_headers=st.one_of(st.none(), st.binary(max_size=60), st.text(max_size=60)),
)
def test_never_raises(
    topic: str,
    data: object,
    headers: dict[object, object],
    attempt: int | None,
    json_headers: object,
) -> None:
    message, got = from_wire(topic, data, headers, attempt, json_headers=json_headers)
    assert got >= 1
    assert message.type
    assert message.id
    assert all(type(k) is str and type(v) is str for k, v in message.headers.items())
    assert isinstance(message.data, bytes | Malformed)
    message.time  # noqa: B018  # a valid time


@pytest.mark.parametrize("prefix", ["ce-", "ce_", "cloudEvents:"])
def test_a_cloudevent_gives_its_id_type_and_time_under_every_bindings_names(prefix: str) -> None:
    headers = {
        f"{prefix}specversion": b"1.0",
        f"{prefix}id": b"evt-1",
        f"{prefix}type": "com.example.order_placed",
        f"{prefix}source": "/orders",
        f"{prefix}time": "2026-03-04T05:06:07.5+01:00",
    }
    message, attempt = from_wire("orders", b"{}", headers, ident="native-id", kind="native")
    assert (message.id, message.type, attempt) == ("evt-1", "com.example.order_placed", 1)
    assert message.time.isoformat() == "2026-03-04T04:06:07.500000+00:00"
    assert message.headers[f"{prefix}source"] == "/orders"


def test_a_cloudevent_with_a_bad_time_keeps_the_envelopes() -> None:
    message, _ = from_wire("orders", b"{}", {"ce-id": "x", "ce-time": "yesterday"}, stamp="12.5")
    assert (message.id, message.type, message.timestamp) == ("x", "orders", 12.5)
