"""What an event store reports to OpenTelemetry, on every backend: database spans in the caller's
trace, the append's trace context kept with each event, projections continuing that trace, and
nothing at all when telemetry is off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from tidings.errors import ConcurrencyError
from tidings.eventsourcing import ANY, NewEvent, Projection, ProjectionContext, Repository
from tidings.eventsourcing.backends.memory import MemoryEventStore
from tidings.eventsourcing.records import ExpectedVersion
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account, MoneyDeposited
from tidings.telemetry import Telemetry
from tidings.testing.telemetry import Captured

if TYPE_CHECKING:
    from conftest import StoreOpener


@pytest.fixture
def captured() -> Captured:
    return Captured()


@pytest.fixture
async def traced(store_opener: StoreOpener, captured: Captured) -> AsyncIterator[EventStore]:
    async with store_opener(captured.telemetry) as store:
        yield store


def app_tracer(captured: Captured) -> Any:
    return captured.telemetry.tracer_provider.get_tracer("app")


async def save_account(store: EventStore, id: str, *deposits: int) -> None:
    account = Account(id)
    account.open("Jane")
    for amount in deposits:
        account.deposit(Decimal(amount))
    await Repository(store, Account).save(account, metadata={"correlation-id": f"c-{id}"})


def stored_span_id(metadata: Any) -> int:
    """The span id of the trace context kept in an event's metadata."""
    context = trace.get_current_span(propagate.extract(metadata)).get_span_context()
    span_id: int = context.span_id
    return span_id


async def test_an_append_is_a_client_span_in_the_callers_trace(
    traced: EventStore, captured: Captured, backend: str
) -> None:
    with app_tracer(captured).start_as_current_span("open account") as command:
        await save_account(traced, "acc-1", 5)
    (append,) = captured.spans("append")
    assert append.name == "append"
    assert append.kind == SpanKind.CLIENT
    assert append.parent.span_id == command.get_span_context().span_id
    assert append.status.status_code == StatusCode.UNSET
    assert dict(append.attributes) == {
        "db.system.name": backend,
        "db.operation.name": "append",
        "db.collection.name": "acc-1",
        "tidings.stream.expected_version": "no stream",
        "tidings.event.count": 2,
        "tidings.stream.version": 2,
    }
    assert captured.total("tidings.eventstore.appended", db__system__name=backend) == 2
    assert (
        captured.total(
            "db.client.operation.duration", db__system__name=backend, db__operation__name="append"
        )
        == 1
    )


async def test_each_appended_event_keeps_the_appends_trace_context(
    traced: EventStore, captured: Captured
) -> None:
    with app_tracer(captured).start_as_current_span("open account"):
        await save_account(traced, "acc-1", 5)
    (append,) = captured.spans("append")
    stored = [recorded async for recorded in traced.read("acc-1")]
    assert [stored_span_id(r.metadata) for r in stored] == [append.context.span_id] * 2
    assert all(r.metadata["correlation-id"] == "c-acc-1" for r in stored)


async def test_a_trace_context_the_event_carried_gives_way_to_the_appends(
    traced: EventStore, captured: Captured
) -> None:
    foreign = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = NewEvent("bank.noted", b"{}", metadata={"traceparent": foreign, "tenant": "t"})
    await traced.append("acc-1", [event])
    (append,) = captured.spans("append")
    (stored,) = [recorded async for recorded in traced.read("acc-1")]
    assert stored_span_id(stored.metadata) == append.context.span_id
    assert stored.metadata["tenant"] == "t"


class Stuck(MemoryEventStore):
    """A store whose appends never finish, until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: ExpectedVersion = ANY
    ) -> int:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("never reached")


async def test_a_cancelled_append_still_ends_its_span(captured: Captured) -> None:
    stuck = Stuck()
    async with EventStore(stuck, telemetry=captured.telemetry) as store:
        appending = asyncio.create_task(store.append("acc-1", [NewEvent("bank.noted", b"{}")]))
        await stuck.entered.wait()
        appending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await appending
    (append,) = captured.spans("append")  # exported: ended
    assert append.attributes["error.type"] == "CancelledError"
    assert captured.total("tidings.eventstore.appended") == 0


async def test_a_concurrency_conflict_fails_the_append_span(
    traced: EventStore, captured: Captured, backend: str
) -> None:
    await save_account(traced, "acc-1")
    with pytest.raises(ConcurrencyError):
        await traced.append("acc-1", [NewEvent("bank.noted", b"{}")], expected_version=5)
    failed = captured.spans("append")[-1]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "ConcurrencyError"
    assert failed.attributes["tidings.stream.expected_version"] == "5"
    assert [event.name for event in failed.events] == ["exception"]
    assert "tidings.stream.version" not in failed.attributes
    assert captured.total("tidings.eventstore.appended") == 1  # the first save's event only
    assert captured.total("db.client.operation.duration", error__type="ConcurrencyError") == 1


async def test_loading_shows_the_snapshot_and_the_read_in_the_callers_trace(
    traced: EventStore, captured: Captured, backend: str
) -> None:
    accounts = Repository(traced, Account, snapshot_every=2)
    account = Account("acc-1")
    account.open("Jane")
    account.deposit(Decimal(5))
    await accounts.save(account)  # version 2: a snapshot is due
    account.deposit(Decimal(1))
    await accounts.save(account)
    with app_tracer(captured).start_as_current_span("load") as load:
        assert (await accounts.load("acc-1")).balance == Decimal(6)
    (saved,) = captured.spans("save_snapshot")
    (loaded,) = captured.spans("load_snapshot")
    (read,) = captured.spans("read")
    assert saved.attributes["tidings.stream.version"] == 2
    assert loaded.attributes["tidings.stream.version"] == 2
    assert loaded.parent.span_id == read.parent.span_id == load.get_span_context().span_id
    assert dict(read.attributes) == {
        "db.system.name": backend,
        "db.operation.name": "read",
        "db.collection.name": "acc-1",
        "db.response.returned_rows": 1,  # only the event after the snapshot
    }
    assert {s.kind for s in (saved, loaded, read)} == {SpanKind.CLIENT}


async def test_a_read_stopped_early_is_not_a_failure(
    traced: EventStore, captured: Captured
) -> None:
    await save_account(traced, "acc-1", 1, 2, 3)
    events = traced.read("acc-1")
    assert isinstance(events, AsyncGenerator)
    first = await anext(events)
    await events.aclose()
    assert first.version == 1
    (read,) = captured.spans("read")
    assert read.status.status_code == StatusCode.UNSET
    assert read.attributes["db.response.returned_rows"] == 1


async def test_a_projection_handles_each_event_in_the_trace_of_its_append(
    traced: EventStore, captured: Captured, backend: str
) -> None:
    balances = Projection("balances")
    deposits: list[Decimal] = []

    @balances.on(MoneyDeposited)
    def deposited(event: MoneyDeposited, ctx: ProjectionContext) -> None:
        deposits.append(event.amount)

    with app_tracer(captured).start_as_current_span("deposit"):
        await save_account(traced, "acc-1", 5, 6)
    await balances.catch_up(traced)
    assert deposits == [Decimal(5), Decimal(6)]
    (append,) = captured.spans("append")
    projected = captured.spans("project ")
    assert [s.name for s in projected] == ["project balances"] * 2  # AccountOpened: no handler
    assert {s.kind for s in projected} == {SpanKind.CONSUMER}
    assert {s.parent.span_id for s in projected} == {append.context.span_id}
    assert {s.context.trace_id for s in projected} == {append.context.trace_id}
    stored = [r async for r in traced.read("acc-1")]
    assert dict(projected[0].attributes) == {
        "db.system.name": backend,
        "db.collection.name": "acc-1",
        "tidings.projection.name": "balances",
        "tidings.event.type": "bank.money_deposited",
        "tidings.event.id": stored[1].id,
        "tidings.stream.version": 2,
        "tidings.event.position": stored[1].position,
    }


async def test_a_failing_projection_handler_fails_its_span(
    traced: EventStore, captured: Captured
) -> None:
    broken = Projection("broken")

    @broken.on(MoneyDeposited)
    def deposited(event: MoneyDeposited, ctx: ProjectionContext) -> None:
        raise ValueError("no table")

    await save_account(traced, "acc-1", 5)
    with pytest.raises(ValueError, match="no table"):
        await broken.catch_up(traced)
    (span,) = captured.spans("project ")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"


async def test_a_catch_up_subscription_page_links_to_each_append(
    traced: EventStore, captured: Captured, backend: str
) -> None:
    tracer = app_tracer(captured)
    with tracer.start_as_current_span("first"):
        await save_account(traced, "a", 5)
    with tracer.start_as_current_span("second"):
        await save_account(traced, "b")
    events = traced.subscribe()
    assert isinstance(events, AsyncGenerator)
    try:
        delivered = [await anext(events) for _ in range(3)]
    finally:
        await events.aclose()
    assert [r.stream for r in delivered] == ["a", "a", "b"]
    (page,) = captured.spans("subscribe")
    appends = {s.context.span_id for s in captured.spans("append")}
    assert {link.context.span_id for link in page.links} == appends
    assert dict(page.attributes) == {
        "db.system.name": backend,
        "db.operation.name": "subscribe",
        "db.response.returned_rows": 3,
        "tidings.position.after": 0,
    }


async def test_without_telemetry_nothing_is_traced_measured_or_stored(
    store_opener: StoreOpener, captured: Captured
) -> None:
    """No provider given and none set globally (the tests set none): the store observes nothing,
    not even inside the application's own span."""
    counted = Projection("counted")
    counted.on(MoneyDeposited)(lambda event, ctx: None)
    async with store_opener() as store:
        assert store.observer is None
        with app_tracer(captured).start_as_current_span("deposit"):
            await save_account(store, "acc-1", 5)
        await counted.catch_up(store)
        stored = [r async for r in store.read("acc-1")]
    assert [s.name for s in captured.spans()] == ["deposit"]
    assert [dict(r.metadata) for r in stored] == [{"correlation-id": "c-acc-1"}] * 2


async def test_with_a_meter_only_the_store_measures_and_keeps_no_trace_context(
    store_opener: StoreOpener, captured: Captured, backend: str
) -> None:
    metered = Telemetry(meter_provider=captured.telemetry.meter_provider)
    async with store_opener(metered) as store:
        with app_tracer(captured).start_as_current_span("deposit"):
            await save_account(store, "acc-1", 5)
        stored = [r async for r in store.read("acc-1")]
    assert [s.name for s in captured.spans()] == ["deposit"]
    assert [dict(r.metadata) for r in stored] == [{"correlation-id": "c-acc-1"}] * 2
    assert captured.total("tidings.eventstore.appended", db__system__name=backend) == 2
