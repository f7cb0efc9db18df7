"""The signup example: three services reacting to UserSignedUp, each in its own group."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tidings
from tidings.examples.signup import (
    EMAIL_RETRY,
    InvalidAddress,
    MailServerBusy,
    SignupApp,
    UserSignedUp,
    build,
    create_bus,
    sample_signups,
)


@pytest.fixture
async def signup(tmp_path: Path) -> AsyncIterator[SignupApp]:
    flow = build(preferences_db=tmp_path / "preferences.db", email_latency=0.0)
    yield flow
    await flow.aclose()


def test_signups_are_the_same_every_time_and_a_few_addresses_are_invalid() -> None:
    users = list(sample_signups(1000))

    assert users == list(sample_signups(1000))
    assert [u.user_id for u in users] == list(range(1, 1001))
    assert [u.user_id for u in users if "@" not in u.email] == [250, 500, 750, 1000]
    assert all(u.signed_up_at.tzinfo is not None for u in users)
    assert tidings.registry.name_of(UserSignedUp) == "user.signed_up"


async def test_every_service_handles_a_signup_and_a_bad_address_is_dead_lettered(
    signup: SignupApp,
) -> None:
    users = list(sample_signups(10, start=245))  # 245 and 252 are 7th users; 250 has no "@"

    async with signup.bus:
        for user in users:
            await signup.bus.publish(user)
        await signup.bus.drain()

    assert sorted(signup.email.sent) == [u.user_id for u in users if u.user_id != 250]
    assert signup.email.attempts[245] == signup.email.attempts[252] == 2
    assert signup.email.retried == 2
    assert {e.user_id for e in signup.audit.entries.values()} == {u.user_id for u in users}
    assert await signup.preferences.count() == 10
    [letter] = await signup.bus.dead_letters.list()
    assert (letter.group, letter.attempts) == ("signup.email", 1)
    assert letter.error_type == "tidings.examples.signup.services.InvalidAddress"
    assert b'"user_id":250' in letter.data


async def test_a_redelivered_signup_changes_nothing(signup: SignupApp) -> None:
    [user] = sample_signups(1, start=3)
    message = signup.bus.message(user)

    for _ in range(2):
        result = await signup.bus.publish_and_wait(message)
        assert result.ok, result.errors

    assert signup.email.sent == {3: user.email}
    assert sum(signup.email.attempts.values()) == 1
    assert len(signup.audit.entries) == 1
    assert signup.preferences.created == 1
    assert await signup.preferences.count() == 1


async def test_the_audit_entry_keeps_the_ids_of_the_envelope(signup: SignupApp) -> None:
    [user] = sample_signups(1)

    result = await signup.bus.publish_and_wait(user, headers={tidings.CORRELATION_ID: "c-1"})

    entry = signup.audit.entries[result.message.id]
    assert (entry.correlation_id, entry.user_id, entry.email) == ("c-1", 1, user.email)


def test_the_email_retry_gives_up_on_a_bad_address_only() -> None:
    assert EMAIL_RETRY.next_delay(InvalidAddress("no @"), 1) is None
    assert EMAIL_RETRY.next_delay(tidings.DecodeError("UserSignedUp", "bad"), 1) is None
    assert EMAIL_RETRY.next_delay(MailServerBusy("421"), 1) is not None
    assert EMAIL_RETRY.next_delay(MailServerBusy("421"), 3) is None


async def test_on_sqlite_the_services_are_fed_by_their_consumer_groups(tmp_path: Path) -> None:
    done = asyncio.Event()

    def watch(handler: tidings.Handler) -> tidings.Handler:
        async def call(message: tidings.Message) -> None:
            await handler(message)
            handled = (len(flow.email.sent), len(flow.audit.entries), flow.preferences.created)
            if handled == (20, 20, 20):
                done.set()

        return call

    flow = build(
        f"sqlite:///{tmp_path}/bus.db",
        preferences_db=tmp_path / "p.db",
        email_latency=0.0,
        middleware=[watch],
    )
    try:
        async with flow.bus:
            await flow.bus.publish_many(sample_signups(20))
            async with asyncio.timeout(30):
                await done.wait()
    finally:
        await flow.aclose()

    assert flow.email.retried == 2  # users 7 and 14


def test_create_bus_runs_on_the_url_given_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIDINGS_URL", "memory://")

    bus = create_bus()

    assert sorted(route.group for route in bus.routes) == [
        "signup.audit",
        "signup.email",
        "signup.preferences",
    ]
    assert os.path.isdir(tmp_path / ".tidings")
    email = next(r for r in bus.routes if r.group == "signup.email")
    assert (email.concurrency, email.retry) == (200, EMAIL_RETRY)
