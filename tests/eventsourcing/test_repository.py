"""Repository: loading, optimistic saves, snapshots and upcasting on a real store."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from tidings.codec import JsonCodec, Registry
from tidings.errors import ConcurrencyError, NotFound
from tidings.eventsourcing import Aggregate, Repository, Upcasters
from tidings.eventsourcing.store import EventStore, NewEvent, Snapshot
from tidings.examples.bank.account import Account, MoneyDeposited
from tidings.message import new_id


async def open_account(repo: Repository[Account], id: str, *deposits: str) -> Account:
    account = Account(id)
    account.open("Jane")
    for amount in deposits:
        account.deposit(Decimal(amount))
    await repo.save(account)
    return account


async def test_a_saved_account_loads_with_its_balance_and_version(store: EventStore) -> None:
    repo = Repository(store, Account)
    saved = await open_account(repo, "acc-1", "10", "2.50")
    assert saved.pending_events == ()
    loaded = await repo.load("acc-1")
    assert (loaded.owner, loaded.balance, loaded.version) == ("Jane", Decimal("12.50"), 3)
    assert loaded.pending_events == ()


async def test_loading_an_unknown_aggregate_raises_not_found(store: EventStore) -> None:
    with pytest.raises(NotFound, match="Account 'nobody'"):
        await Repository(store, Account).load("nobody")


async def test_of_two_saves_from_the_same_version_the_second_raises(store: EventStore) -> None:
    repo = Repository(store, Account)
    await open_account(repo, "acc-1", "10")
    first, second = await repo.load("acc-1"), await repo.load("acc-1")
    first.deposit(Decimal(5))
    second.withdraw(Decimal(10))
    await repo.save(first)
    with pytest.raises(ConcurrencyError) as raised:
        await repo.save(second)
    assert (raised.value.stream, raised.value.expected, raised.value.actual) == ("acc-1", 2, 3)
    assert len(second.pending_events) == 1  # kept, nothing stored
    retry = await repo.load("acc-1")
    retry.withdraw(Decimal(10))
    await repo.save(retry)
    assert (await repo.load("acc-1")).balance == Decimal(5)


async def test_a_new_aggregate_cannot_overwrite_an_existing_stream(store: EventStore) -> None:
    repo = Repository(store, Account)
    await open_account(repo, "acc-1")
    with pytest.raises(ConcurrencyError):
        await open_account(repo, "acc-1")


async def test_saving_without_pending_events_stores_nothing(store: EventStore) -> None:
    repo = Repository(store, Account)
    await open_account(repo, "acc-1")
    await repo.save(await repo.load("acc-1"))
    assert (await store.stream_info("acc-1")).version == 1


async def test_metadata_is_stored_with_every_event(store: EventStore) -> None:
    repo = Repository(store, Account)
    account = Account("acc-1")
    account.open("Jane")
    account.deposit(Decimal(1))
    await repo.save(account, metadata={"correlation-id": "c-1"})
    assert [dict(r.metadata) async for r in store.read("acc-1")] == [{"correlation-id": "c-1"}] * 2


async def test_snapshots_are_written_when_a_save_crosses_a_multiple(store: EventStore) -> None:
    repo = Repository(store, Account, snapshot_every=3)
    account = await open_account(repo, "acc-1", "1")  # 2 events: no snapshot yet
    assert await store.load_snapshot("acc-1") is None
    account.deposit(Decimal(2))
    account.deposit(Decimal(3))
    await repo.save(account)  # 4 events: crossed 3
    snapshot = await store.load_snapshot("acc-1")
    assert snapshot is not None
    assert (snapshot.version, snapshot.type, snapshot.schema_version) == (4, "Account", 1)
    assert (await repo.load("acc-1")).balance == Decimal(6)


async def test_load_starts_from_the_snapshot_and_applies_later_events(store: EventStore) -> None:
    repo = Repository(store, Account, snapshot_every=100)
    account = await open_account(repo, "acc-1", "1", "2")
    state = JsonCodec().encode({"owner": "Jane", "balance": Decimal(1000)})
    await store.save_snapshot(Snapshot("acc-1", 2, "Account", state))
    loaded = await repo.load("acc-1")
    # version 3 was applied on top of the snapshot's (deliberately different) state
    assert (loaded.balance, loaded.version) == (Decimal(1002), account.version)
    assert (await Repository(store, Account).load("acc-1")).balance == Decimal(3)


async def test_a_snapshot_of_another_schema_version_is_ignored(store: EventStore) -> None:
    repo = Repository(store, Account, snapshot_every=1)
    await open_account(repo, "acc-1", "7")
    state = JsonCodec().encode({"owner": "Jane", "balance": Decimal(1000)})
    await store.save_snapshot(Snapshot("acc-1", 2, "Account", state, schema_version=2))
    assert (await repo.load("acc-1")).balance == Decimal(7)


@dataclass(frozen=True)
class Renamed:
    __schema_version__: ClassVar[int] = 2
    title: str


class Document(Aggregate):
    title: str = ""

    def apply(self, event: object) -> None:
        match event:
            case Renamed(title=title):
                self.title = title


async def test_old_events_are_upcast_on_load(store: EventStore) -> None:
    names = Registry()
    names.register(Renamed, "document.renamed")
    upcasters = Upcasters()

    @upcasters.register("document.renamed", from_version=1)
    def name_to_title(data: dict[str, Any]) -> dict[str, Any]:
        return {"title": data["name"]}

    old = NewEvent("document.renamed", b'{"name": "draft"}', new_id(), schema_version=1)
    await store.append("doc-1", [old])
    repo = Repository(store, Document, upcasters=upcasters, registry=names)
    document = await repo.load("doc-1")
    assert document.title == "draft"
    document.record(Renamed("final"))
    await repo.save(document)
    assert [r.schema_version async for r in store.read("doc-1")] == [1, 2]
    assert (await repo.load("doc-1")).title == "final"


async def test_events_are_stored_under_their_registered_names(store: EventStore) -> None:
    repo = Repository(store, Account)
    await open_account(repo, "acc-1", "3")
    assert [r.type async for r in store.read("acc-1")] == [
        "bank.account_opened",
        "bank.money_deposited",
    ]
    assert MoneyDeposited(Decimal(3)) == JsonCodec().decode(
        [r async for r in store.read("acc-1")][1].data, MoneyDeposited
    )


async def test_decode_turns_what_the_store_reads_into_event_objects(store: EventStore) -> None:
    repo = Repository(store, Account)
    await open_account(repo, "acc-9", "10")
    events = [repo.decode(recorded) async for recorded in store.read("acc-9")]
    assert events[1:] == [MoneyDeposited(Decimal(10))]
    assert Account.from_events("acc-9", events).balance == Decimal(10)
