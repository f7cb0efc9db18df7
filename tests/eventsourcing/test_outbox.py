"""The outbox relay: every stored event is published at least once, with its id, across crashes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from tidings.bus import Bus
from tidings.eventsourcing import OutboxRelay, Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account, MoneyDeposited
from tidings.message import Message


class Recorder:
    """A publisher that keeps what it was given, as a broker would."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Message]] = []
        self.arrived = asyncio.Condition()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        async with self.arrived:
            self.published.extend((topic, message) for message in messages)
            self.arrived.notify_all()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10), self.arrived:  # a guard against hanging
            await self.arrived.wait_for(lambda: len(self.published) >= count)

    @property
    def ids(self) -> list[str]:
        return [message.id for _, message in self.published]


class CrashAfterPublish(Recorder):
    """Accepts the messages, then never returns: the process dies before the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted = asyncio.Event()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        await super().publish(topic, messages)
        self.accepted.set()
        await asyncio.Event().wait()


async def save_account(store: EventStore, id: str, *deposits: int) -> None:
    account = Account(id)
    account.open("Jane")
    for amount in deposits:
        account.deposit(Decimal(amount))
    await Repository(store, Account).save(account, metadata={"correlation-id": f"c-{id}"})


async def test_every_stored_event_is_published_with_its_id_key_and_headers(
    store: EventStore,
) -> None:
    await save_account(store, "a", 5, 6)
    await save_account(store, "b")
    publisher = Recorder()
    assert await OutboxRelay(store, publisher).relay_pending() == 4
    stored = [r async for r in store.read_all()]
    assert publisher.ids == [r.id for r in stored]
    topic, message = publisher.published[1]
    assert (topic, message.type, message.key) == ("bank.money_deposited", topic, "a")
    assert message.data == stored[1].data
    assert dict(message.headers) == {"correlation-id": "c-a"}
    assert message.timestamp == stored[1].recorded_at.timestamp()
    assert await store.get_checkpoint("outbox") == 4
    assert await OutboxRelay(store, publisher).relay_pending() == 0


async def test_consecutive_events_of_one_topic_are_published_in_one_call(
    store: EventStore,
) -> None:
    calls: list[tuple[str, int]] = []

    class Counting(Recorder):
        async def publish(self, topic: str, messages: Sequence[Message]) -> None:
            calls.append((topic, len(messages)))

    await save_account(store, "a", 1, 2, 3)
    await OutboxRelay(store, Counting()).relay_pending()
    assert calls == [("bank.account_opened", 1), ("bank.money_deposited", 3)]


async def test_a_crash_between_publish_and_checkpoint_publishes_again_with_the_same_ids(
    store: EventStore,
) -> None:
    await save_account(store, "a", 5)
    crashing = CrashAfterPublish()
    relay = asyncio.create_task(OutboxRelay(store, crashing, batch_size=10).run())
    await crashing.accepted.wait()
    relay.cancel()  # the crash: the publish went out, the checkpoint was never written
    with contextlib.suppress(asyncio.CancelledError):
        await relay
    assert await store.get_checkpoint("outbox") == 0

    restarted = Recorder()
    assert await OutboxRelay(store, restarted).relay_pending() == 2
    stored = [r.id async for r in store.read_all()]
    assert crashing.ids == stored[:1]  # the first publish call (one topic) went out
    assert restarted.ids == stored  # ...and goes out again, with the same id


async def test_a_failed_publish_propagates_and_keeps_the_checkpoint(store: EventStore) -> None:
    class Down(Recorder):
        async def publish(self, topic: str, messages: Sequence[Message]) -> None:
            raise ConnectionError("broker down")

    await save_account(store, "a", 5)
    with pytest.raises(ConnectionError):
        await OutboxRelay(store, Down()).relay_pending()
    assert await store.get_checkpoint("outbox") == 0


async def test_run_publishes_events_stored_while_it_runs(store: EventStore) -> None:
    publisher = Recorder()
    relay = asyncio.create_task(OutboxRelay(store, publisher, name="live").run())
    try:
        await save_account(store, "a", 1)
        await save_account(store, "b", 2)
        await publisher.wait_for(4)
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
    assert publisher.ids == [r.id async for r in store.read_all()]


@dataclass(frozen=True)
class InProcessFeatures:
    in_process: bool = True


async def test_in_process_publishers_get_event_objects(store: EventStore) -> None:
    class InProcess(Recorder):
        features = InProcessFeatures()

    publisher = InProcess()
    await save_account(store, "a", 5)
    await OutboxRelay(store, publisher).relay_pending()
    assert publisher.published[1][1].data == MoneyDeposited(Decimal(5))


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("transport", ["memory", "sqlite"])
async def test_relayed_events_reach_the_handlers_of_a_bus(
    store: EventStore, transport: str, tmp_path: Path
) -> None:
    bus = Bus("memory://" if transport == "memory" else f"sqlite:///{tmp_path / 'bus.db'}")
    received: list[MoneyDeposited] = []
    both = asyncio.Event()

    @bus.subscribe(MoneyDeposited)
    async def deposited(event: MoneyDeposited) -> None:
        received.append(event)
        if len(received) == 2:
            both.set()

    async with bus:
        await save_account(store, "a", 5, 6)
        await OutboxRelay(store, bus.transport).relay_pending()
        async with asyncio.timeout(10):  # a guard against hanging
            await both.wait()
    assert received == [MoneyDeposited(Decimal(5)), MoneyDeposited(Decimal(6))]
