"""A password given in a URL appears in no repr, str, ``url`` or error message of the transport,
its options or an event store (nothing here connects: these are what a log line would show)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import tidings
from tidings.eventsourcing.open import open_backend
from tidings.transports import from_url, redact

SECRET = "Pa55-w0rd"

TRANSPORT_URLS = [
    f"postgresql://app:{SECRET}@127.0.0.1:5432/test?schema=app",
    f"postgres://app:{SECRET}@127.0.0.1/test?sslpassword={SECRET}",
    f"nats://app:{SECRET}@127.0.0.1:4222,app:{SECRET}@127.0.0.2:4222?stream=ORDERS",
    f"kafka://app:{SECRET}@127.0.0.1:9092?tls=true",
    f"amqp://app:{SECRET}@127.0.0.1:5672/?exchange=orders",
    f"amqps://app:{SECRET}@127.0.0.1:5671/vhost?keyfile_password={SECRET}",
    f"redis://app:{SECRET}@127.0.0.1:6379/0?prefix=orders",
    f"rediss://:{SECRET}@127.0.0.1:6379/0",
]
STORE_URLS = [
    f"postgresql://app:{SECRET}@127.0.0.1:5432/test?schema=app",
    f"postgres://app:{SECRET}@127.0.0.1/test",
]


def shown(*things: object) -> str:
    return "\n".join(f"{thing!r}\n{thing}" for thing in things)


@pytest.mark.parametrize("url", TRANSPORT_URLS)
def test_a_transport_shows_no_password(url: str) -> None:
    transport = from_url(url)
    options = getattr(transport, "options", None)
    assert SECRET not in shown(transport, options)
    assert SECRET not in redact(url)
    assert "***" in redact(url)


@pytest.mark.parametrize("url", STORE_URLS)
def test_an_event_store_shows_no_password(url: str) -> None:
    store = tidings.EventStore(url)
    assert SECRET not in shown(store, store.url)


def refusal(make: Callable[[], object]) -> str:
    with pytest.raises(ValueError) as caught:  # noqa: PT011  # any message: none may leak
        make()
    return str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"mongodb://app:{SECRET}@127.0.0.1/db",
        f"postgresql://app:{SECRET}@127.0.0.1/test?pool_size=many",
        f"nats://app:{SECRET}@127.0.0.1:4222?bogus=1",
        f"kafka://app:{SECRET}@127.0.0.1:9092?partitions=some",
        f"amqp://app:{SECRET}@127.0.0.1:5672/?reconnect_timeout=-1",
        f"redis://app:{SECRET}@127.0.0.1:6379/x",
        f"sqlite://app:{SECRET}@127.0.0.1/x.db",
    ],
)
def test_errors_about_a_url_show_no_password(url: str) -> None:
    assert SECRET not in refusal(lambda: from_url(url))


@pytest.mark.parametrize(
    "url",
    [
        f"mongodb://app:{SECRET}@127.0.0.1/db",
        f"app:{SECRET}@127.0.0.1/db",
        f"postgresql://app:{SECRET}@127.0.0.1/test?pool_size=many",
        f"sqlite://app:{SECRET}@127.0.0.1/x.db",
    ],
)
def test_event_store_url_errors_show_no_password(url: str) -> None:
    message = refusal(lambda: open_backend(url))
    assert SECRET not in message


def test_an_unknown_scheme_is_named_alone() -> None:
    assert "'mongodb'" in refusal(lambda: from_url(f"mongodb://app:{SECRET}@h/db"))
    assert "'mongodb'" in refusal(lambda: tidings.EventStore(f"mongodb://app:{SECRET}@h/db"))
