"""Idempotent consumers: each message id handled once, effects committed with the record."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from events import UserSignedUp

from tidings import Bus, Message
from tidings.middleware.dedupe import MemoryInbox, SqliteInbox, dedupe, inbox_transaction


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
