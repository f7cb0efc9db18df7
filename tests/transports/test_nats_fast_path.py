"""The NATS transport's private fast path is checked against the installed nats-py, and the
public path it falls back to works on its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from importlib.metadata import version

import pytest
from brokers import delete_streams
from nats.aio.client import Client as NATS
from test_nats import take_acked
from test_nats_suite import raw_publish

from tidings.message import Message
from tidings.transports.nats import NatsOptions, NatsTransport, fast_path


def test_the_fast_path_was_checked_with_the_installed_nats_py() -> None:
    installed = version("nats-py")
    assert installed in fast_path.TESTED, (
        f"nats-py {installed} runs the NATS transport on its public API only, which is slower. "
        f"Run tests/transports/test_nats*.py and `python -m bench b6_nats` with it, check the "
        f"private members tidings/transports/nats/fast_path.py uses, then add {installed!r} to "
        f"fast_path.TESTED (or drop the fast path if the public API is as fast by now)."
    )


@pytest.fixture
async def public_transport(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[NatsTransport]:
    """A transport on a stream of this test only, with the fast path switched off."""
    monkeypatch.setattr(fast_path, "send", fast_path.public_send)
    monkeypatch.setattr(fast_path, "reply_all", fast_path.public_reply_all)
    monkeypatch.setattr(fast_path, "client", NATS)
    tag = uuid.uuid4().hex[:10]
    options = NatsOptions.from_url(f"{nats_url}?stream=P{tag}&prefix=p{tag}")
    transport = NatsTransport(options)
    yield transport
    await transport.aclose()
    await delete_streams(nats_url, options)


async def test_the_public_path_carries_envelopes_and_reads_foreign_headers(
    public_transport: NatsTransport, nats_url: str
) -> None:
    sent = [Message("t.item", b"%d" % n, {"n": str(n), "x-y": ""}, f"k{n}") for n in range(600)]
    await public_transport.publish("items", sent)  # more than one chunk
    garbage = {"tidings-type": b"t.foreign", "Nats-Msg-Id": b"\xff\xfe", "h": b"\xff\xfe"}
    await raw_publish(nats_url, f"{public_transport.options.prefix}.items", b"raw", garbage)
    subscription = public_transport.subscribe("items", group="g")
    got = await take_acked(subscription, 601)
    keyed = sorted((m for m in got if m.key is not None), key=lambda m: int(m.headers["n"]))
    assert keyed == sent  # each key in its partition: in order per key, not across keys
    assert [m.timestamp for m in keyed] == [m.timestamp for m in sent]
    (foreign,) = [m for m in got if m.key is None]
    assert (foreign.type, foreign.data, foreign.headers) == (
        "t.foreign",
        b"raw",
        {"h": "\ufffd\ufffd"},
    )
    assert foreign.id
