"""The outbox relay carries the trace: a consumer handles a relayed event in the trace of the
append that stored it, in this process or after an append made by another one."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from tidings.bus import Bus
from tidings.eventsourcing import OutboxRelay, Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account, MoneyDeposited
from tidings.message import Message
from tidings.testing.telemetry import Captured
from tidings.transports import from_url

if TYPE_CHECKING:
    from conftest import StoreOpener

ROOT = Path(__file__).parents[2]

# Another process appends inside a span of its own, with its own in-memory exporter, and prints
# the append span's ids.
APPEND = """
import asyncio, json, sys
from decimal import Decimal

from tidings.examples.bank.account import Account
from tidings.eventsourcing import Repository
from tidings.eventsourcing.store import EventStore
from tidings.testing.telemetry import Captured


async def main(url):
    captured = Captured()
    tracer = captured.telemetry.tracer_provider.get_tracer("app")
    async with EventStore(url, telemetry=captured.telemetry) as store:
        with tracer.start_as_current_span("open account"):
            account = Account("acc-1")
            account.open("Jane")
            account.deposit(Decimal(5))
            await Repository(store, Account).save(account)
    (append,) = captured.spans("append")
    print(json.dumps({"trace_id": append.context.trace_id, "span_id": append.context.span_id}))


asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def captured() -> Captured:
    return Captured()


async def save_account(store: EventStore, id: str, *deposits: int) -> None:
    account = Account(id)
    account.open("Jane")
    for amount in deposits:
        account.deposit(Decimal(amount))
    await Repository(store, Account).save(account)


def carried_span_id(headers: Any) -> Any:
    return trace.get_current_span(propagate.extract(headers)).get_span_context().span_id


class Failing:
    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        raise ConnectionError("broker down")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_relayed_event_is_handled_in_the_trace_of_its_append(
    store_opener: StoreOpener, captured: Captured
) -> None:
    bus = Bus(telemetry=captured.telemetry)
    handled = asyncio.Event()
    bus.subscribe(MoneyDeposited, lambda event: handled.set(), group="balances")
    async with store_opener(captured.telemetry) as store, bus:
        with captured.telemetry.tracer_provider.get_tracer("app").start_as_current_span("open"):
            await save_account(store, "acc-1", 5)
        assert await OutboxRelay(store, bus.transport).relay_pending() == 2
        async with asyncio.timeout(10):  # a guard against hanging
            await handled.wait()
    (append,) = captured.spans("append")
    (send,) = captured.spans("send bank.money_deposited")
    (process,) = captured.spans("process bank.money_deposited")
    assert send.kind == SpanKind.PRODUCER
    assert send.parent.span_id == process.parent.span_id == append.context.span_id
    assert send.context.trace_id == process.context.trace_id == append.context.trace_id
    assert send.attributes["messaging.system"] == "tidings"
    assert send.attributes["messaging.destination.name"] == "bank.money_deposited"


@pytest.mark.parametrize("backend", ["memory"])
async def test_one_publish_of_events_from_several_appends_links_to_each(
    store_opener: StoreOpener, captured: Captured
) -> None:
    published: list[Message] = []

    class Recorder:
        async def publish(self, topic: str, messages: Sequence[Message]) -> None:
            published.extend(messages)

    tracer = captured.telemetry.tracer_provider.get_tracer("app")
    async with store_opener(captured.telemetry) as store:
        for id in ("a", "b"):
            with tracer.start_as_current_span(f"open {id}"):
                await save_account(store, id)  # one event each: two AccountOpened in a row
        await OutboxRelay(store, Recorder()).relay_pending()
    (send,) = captured.spans("send ")
    appends = captured.spans("append")
    assert send.parent is None
    assert {link.context.span_id for link in send.links} == {a.context.span_id for a in appends}
    assert send.attributes["messaging.batch.message_count"] == 2
    assert [carried_span_id(m.headers) for m in published] == [a.context.span_id for a in appends]


@pytest.mark.parametrize("backend", ["memory"])
async def test_a_failed_relay_publish_fails_its_send_span(
    store_opener: StoreOpener, captured: Captured
) -> None:
    async with store_opener(captured.telemetry) as store:
        await save_account(store, "a")
        with pytest.raises(ConnectionError):
            await OutboxRelay(store, Failing()).relay_pending()
    (send,) = captured.spans("send ")
    assert send.status.status_code == StatusCode.ERROR
    assert send.attributes["error.type"] == "ConnectionError"


async def append_in_another_process(url: str) -> dict[str, Any]:
    """Run :data:`APPEND` on the store at ``url``; the ids of its append span."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        APPEND,
        url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    ids: dict[str, Any] = json.loads(out)
    return ids


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_consumer_continues_the_trace_of_an_append_made_by_another_process(
    store_url: str, captured: Captured, tmp_path: Path
) -> None:
    """One process appends in a span; here the relay publishes through a SQLite transport file
    and a bus on that file handles the event: its ``process`` span is a child of the other
    process's append span."""
    appended = await append_in_another_process(store_url)
    bus_url = f"sqlite:///{tmp_path / 'bus.db'}"
    consumer = Bus(bus_url, telemetry=captured.telemetry)
    handled = asyncio.Event()
    consumer.subscribe(MoneyDeposited, lambda event: handled.set(), group="balances")
    relayed = from_url(bus_url)  # the relay's own connection to the broker file
    async with EventStore(store_url, telemetry=captured.telemetry) as store, consumer:
        await relayed.start()
        try:
            assert await OutboxRelay(store, relayed).relay_pending() == 2
        finally:
            await relayed.aclose()
        async with asyncio.timeout(10):  # a guard against hanging
            await handled.wait()
    (send,) = captured.spans("send bank.money_deposited")
    (process,) = captured.spans("process bank.money_deposited")
    assert process.context.trace_id == send.context.trace_id == appended["trace_id"]
    assert process.parent.span_id == send.parent.span_id == appended["span_id"]
    assert send.attributes["messaging.system"] == process.attributes["messaging.system"] == "sqlite"
