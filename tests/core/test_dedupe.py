"""Idempotent consumers: each message id handled once, effects committed with the record."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from events import UserSignedUp

from tidings import Bus, Message
from tidings.middleware.dedupe import MemoryInbox, SqliteInbox, dedupe, inbox_transaction
from tidings.testing import FakeClock


async def test_a_redelivered_message_is_handled_once() -> None:
    inbox = MemoryInbox()
    calls: list[int] = []
    bus = Bus()
    bus.subscribe(UserSignedUp, lambda e: calls.append(e.user_id), middleware=[dedupe(inbox)])
    message = bus.message(UserSignedUp(1, "x"))
    for _ in range(3):
        await bus.publish_and_wait(message)
    await bus.publish_and_wait(UserSignedUp(2, "x"))
    assert calls == [1, 2]


async def test_concurrent_deliveries_of_one_id_run_once() -> None:
    inbox = MemoryInbox()
    calls = 0

    async def slow(message: Message) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)

    handler = dedupe(inbox)(slow)
    message = Message("t", None)
    await asyncio.gather(*(handler(message) for _ in range(5)))
    assert calls == 1


async def test_a_failed_attempt_is_not_recorded() -> None:
    inbox = MemoryInbox()
    attempts = 0

    async def flaky(message: Message) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("once")

    handler = dedupe(inbox, scope="g")(flaky)
    message = Message("t", None)
    with pytest.raises(ConnectionError):
        await handler(message)
    await handler(message)
    await handler(message)
    assert attempts == 2
    assert inbox.keys == {f"g:{message.id}"}


async def test_sqlite_effects_commit_with_the_record_or_not_at_all(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE effects (message_id TEXT)")
    inbox = SqliteInbox(path)
    fail_after_write = True

    async def handler(message: Message) -> None:
        inbox_transaction().connection.execute("INSERT INTO effects VALUES (?)", (message.id,))
        if fail_after_write:
            raise RuntimeError("crash after the effect")

    once = dedupe(inbox, scope="effects")(handler)
    message = Message("t", None)
    with pytest.raises(RuntimeError):
        await once(message)
    fail_after_write = False
    await once(message)
    await once(message)
    inbox.close()
    with sqlite3.connect(path) as check:
        rows = check.execute("SELECT message_id FROM effects").fetchall()
    assert rows == [(message.id,)]


def test_inbox_transaction_outside_a_handler_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="dedupe handler"):
        inbox_transaction()


class Handled(list[str]):
    """A handler that lists the ids of the messages it handled."""

    async def __call__(self, message: Message) -> None:
        self.append(message.id)


async def test_a_memory_inbox_forgets_ids_after_keep() -> None:
    clock = FakeClock()
    inbox = MemoryInbox(keep=60, clock=clock)
    handled = Handled()
    once = dedupe(inbox, scope="g")(handled)
    message = Message("t", None)
    await once(message)
    clock.advance(59)
    await once(message)  # remembered: skipped
    clock.advance(2)
    await once(message)  # forgotten: handled again
    assert handled == [message.id, message.id]
    assert inbox.keys == {f"g:{message.id}"}


async def test_a_memory_inbox_keeps_the_newest_max_ids() -> None:
    inbox = MemoryInbox(max_ids=3)
    handled = Handled()
    once = dedupe(inbox)(handled)
    messages = [Message("t", None) for _ in range(5)]
    for message in messages:
        await once(message)
    assert inbox.keys == {f":{m.id}" for m in messages[-3:]}
    await once(messages[-1])  # remembered: skipped
    await once(messages[0])  # forgotten: handled again
    assert handled == [m.id for m in [*messages, messages[0]]]


def sqlite_keys(path: str) -> list[str]:
    with sqlite3.connect(path) as check:
        return [key for (key,) in check.execute("SELECT key FROM tidings_inbox ORDER BY rowid")]


async def test_a_sqlite_inbox_forgets_ids_after_keep(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    clock = FakeClock()
    inbox = SqliteInbox(path, keep=60, clock=clock)
    handled = Handled()
    once = dedupe(inbox)(handled)
    expired = [Message("t", None) for _ in range(20)]
    for message in expired:
        await once(message)
    clock.advance(61)
    recent = [Message("t", None) for _ in range(20)]  # old ids are deleted once every 16
    for message in [*recent, recent[0], expired[0]]:
        await once(message)
    inbox.close()
    assert handled == [m.id for m in [*expired, *recent, expired[0]]]
    assert sqlite_keys(path) == [f":{m.id}" for m in [*recent, expired[0]]]


async def test_a_sqlite_inbox_keeps_about_the_newest_max_ids(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    inbox = SqliteInbox(path, max_ids=3)
    handled = Handled()
    once = dedupe(inbox)(handled)
    messages = [Message("t", None) for _ in range(40)]
    for message in messages:
        await once(message)
    keys = sqlite_keys(path)
    assert 3 <= len(keys) < 3 + 16  # old ids are deleted once every 16 recorded
    assert keys == [f":{m.id}" for m in messages[-len(keys) :]]
    await once(messages[-1])  # remembered: skipped
    await once(messages[0])  # forgotten: handled again
    inbox.close()
    assert handled == [m.id for m in [*messages, messages[0]]]


async def test_a_sqlite_inbox_of_an_earlier_version_keeps_its_ids(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    message = Message("t", None)
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE tidings_inbox (key TEXT PRIMARY KEY)")
        old.execute("INSERT INTO tidings_inbox VALUES (?)", (f"g:{message.id}",))
    clock = FakeClock()
    inbox = SqliteInbox(path, keep=60, clock=clock)
    handled = Handled()
    once = dedupe(inbox, scope="g")(handled)
    await once(message)  # recorded before the upgrade: skipped
    clock.advance(61)
    for _ in range(16):  # the old id counts from the upgrade, and is then forgotten
        await once(Message("t", None))
    await once(message)
    inbox.close()
    assert handled[0] != message.id
    assert handled[-1] == message.id


@pytest.mark.parametrize(
    ("retention", "match"), [({"keep": 0}, "keep"), ({"max_ids": 0}, "max_ids")]
)
def test_retention_must_be_positive(retention: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MemoryInbox(**retention)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        SqliteInbox("unused.db", **retention)  # type: ignore[arg-type]


def test_inboxes_have_a_documented_default_retention() -> None:
    assert MemoryInbox().keep == SqliteInbox("unused.db").keep == 7 * 24 * 3600
    assert MemoryInbox().max_ids == 1_000_000
    assert SqliteInbox("unused.db").max_ids is None
