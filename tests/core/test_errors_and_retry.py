"""Retry schedules, dead letters, replay, and bad input."""

from __future__ import annotations

import asyncio
import logging

import pytest
from events import UserSignedUp

import tidings
from tidings import Bus, Message, Retry
from tidings.middleware import chain
from tidings.middleware.dead_letter import dead_letter
from tidings.middleware.logging import log_failures
from tidings.middleware.retry import retry
from tidings.middleware.timeout import timeout
from tidings.testing import FakeClock


class Flaky:
    """Fails ``failures`` times, then succeeds."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self, event: UserSignedUp) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"attempt {self.calls} failed")


def test_backoff_grows_by_the_multiplier_up_to_the_cap() -> None:
    policy = Retry(max_attempts=10, initial_delay=0.1, multiplier=2.0, max_delay=1.0, jitter=False)
    delays = [policy.next_delay(RuntimeError(), attempt) for attempt in range(1, 10)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert policy.next_delay(RuntimeError(), 10) is None


def test_backoff_of_a_huge_attempt_is_the_cap() -> None:
    """An attempt count from another producer's header may be any number: the wait is capped,
    never an OverflowError."""
    policy = Retry(max_attempts=3, initial_delay=0.1, multiplier=2.0, max_delay=30.0)
    assert policy.backoff(10**6) == 30.0


def test_full_jitter_stays_within_the_backoff() -> None:
    policy = Retry(max_attempts=5, initial_delay=1.0, multiplier=3.0, jitter=True)
    for attempt in range(1, 5):
        delays = {policy.next_delay(RuntimeError(), attempt) for _ in range(50)}
        assert all(d is not None and 0 <= d <= policy.backoff(attempt) for d in delays)
        assert len(delays) > 1, "jitter spreads the delays"


def test_which_errors_retry_and_which_give_up() -> None:
    policy = Retry(max_attempts=3, retry_on=(ConnectionError,), give_up_on=(PermissionError,))
    assert policy.next_delay(ConnectionError(), 1) is not None
    assert policy.next_delay(ValueError(), 1) is None  # not listed in retry_on
    assert Retry(give_up_on=(ValueError,)).next_delay(ValueError(), 1) is None
    assert Retry().next_delay(tidings.DecodeError("T", "bad"), 1) is None
    with pytest.raises(ValueError, match="max_attempts"):
        Retry(max_attempts=0)


async def test_retry_delays_follow_the_schedule_on_a_fake_clock() -> None:
    clock = FakeClock()
    bus = Bus(clock=clock)
    flaky = Flaky(failures=3)
    policy = Retry(max_attempts=5, initial_delay=0.5, multiplier=2.0, max_delay=30, jitter=False)
    bus.subscribe(UserSignedUp, flaky, retry=policy)
    result = await bus.publish_and_wait(UserSignedUp(1, "x"))
    assert result.ok
    assert flaky.calls == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


async def test_queued_retries_are_redelivered_after_their_backoff() -> None:
    clock = FakeClock()
    bus = Bus(clock=clock)
    flaky = Flaky(failures=2)
    policy = Retry(max_attempts=3, initial_delay=0.25, multiplier=4.0, jitter=False)
    bus.subscribe(UserSignedUp, flaky, retry=policy)
    async with bus:
        await bus.publish(UserSignedUp(1, "x"))
    assert flaky.calls == 3
    assert clock.sleeps == [0.25, 1.0]
    assert await bus.dead_letters.list() == []


@pytest.mark.parametrize("path", ["publish", "publish_and_wait"])
async def test_after_the_last_attempt_the_message_is_dead_lettered_with_its_reason(
    path: str,
) -> None:
    clock = FakeClock()
    bus = Bus(clock=clock)
    flaky = Flaky(failures=99, error=TimeoutError)
    bus.subscribe(
        UserSignedUp, flaky, group="mailer", retry=Retry(max_attempts=3, initial_delay=0.01)
    )
    async with bus:
        if path == "publish":
            sent = await bus.publish(UserSignedUp(1, "x"), key="u1", headers={"tenant": "t"})
        else:
            sent = (
                await bus.publish_and_wait(UserSignedUp(1, "x"), key="u1", headers={"tenant": "t"})
            ).message
    (letter,) = await bus.dead_letters.list()
    assert flaky.calls == 3
    assert letter.attempts == 3
    assert letter.error_type == "builtins.TimeoutError"
    assert letter.error_message == "attempt 3 failed"
    assert "TimeoutError" in letter.traceback
    assert letter.topic == "member.signed_up"
    assert letter.group == "mailer"
    assert letter.message_id == sent.id
    assert letter.key == "u1"
    assert letter.headers["tenant"] == "t"
    assert letter.failed_at == clock.now()
    assert letter == await bus.dead_letters.show(letter.id)


async def test_replay_delivers_a_dead_letter_again_to_the_group_that_failed_it() -> None:
    bus = Bus()
    flaky = Flaky(failures=1)
    others: list[int] = []
    bus.subscribe(UserSignedUp, flaky, group="mailer")
    bus.subscribe(UserSignedUp, lambda e: others.append(e.user_id), group="audit")
    async with bus:
        await bus.publish(UserSignedUp(5, "x"))
        await bus.drain()
        (letter,) = await bus.dead_letters.list()
        assert await bus.dead_letters.replay() == 1
        await bus.drain()
        assert flaky.calls == 2  # handled on replay
        assert others == [5]  # the audit group, which succeeded, does not see it twice
        assert await bus.dead_letters.list() == []
        with pytest.raises(tidings.NotFound):
            await bus.dead_letters.show(letter.id)


async def test_purge_removes_chosen_or_all_letters() -> None:
    bus = Bus()
    bus.subscribe(UserSignedUp, Flaky(failures=99))
    for n in range(3):
        await bus.publish_and_wait(UserSignedUp(n, "x"))
    first, *rest = await bus.dead_letters.list()
    assert await bus.dead_letters.purge([first.id]) == 1
    assert [d.id for d in await bus.dead_letters.list()] == [d.id for d in rest]
    assert await bus.dead_letters.purge() == 2
    assert await bus.dead_letters.list() == []


async def test_malformed_input_is_dead_lettered_and_the_worker_keeps_running() -> None:
    bus = Bus()
    handled: list[int] = []

    async def handler(event: UserSignedUp) -> None:
        handled.append(event.user_id)

    bus.subscribe(UserSignedUp, handler, group="users", retry=Retry(max_attempts=5))
    async with bus:
        await bus.publish(UserSignedUp(1, "a@x"))
        await bus.publish(Message("member.signed_up", b"{not json"))
        await bus.publish(Message("member.signed_up", {"user_id": "not a number", "email": "x"}))
        await bus.publish(Message("member.signed_up", b'{"user_id": 2, "email": "b@x"}'))
        await bus.publish(UserSignedUp(3, "c@x"))
    assert handled == [1, 2, 3]
    letters = await bus.dead_letters.list()
    assert len(letters) == 2
    assert all(letter.error_type == "tidings.errors.DecodeError" for letter in letters)
    assert all(letter.attempts == 1 for letter in letters), "bad input is not retried"
    assert "UserSignedUp" in letters[0].error_message
    assert "$.user_id" in letters[1].error_message
    assert letters[0].data == b"{not json"


async def test_a_malformed_message_reaches_no_handler_and_is_dead_lettered_raw() -> None:
    """A message whose envelope a transport could not read is dead-lettered by every kind of
    route (typed, topic, Message-taking, batch) with its reason and raw bytes; good ones pass."""
    bus = Bus()
    seen: dict[str, list[object]] = {"typed": [], "topic": [], "envelope": [], "batch": []}

    async def typed(event: UserSignedUp) -> None:
        seen["typed"].append(event)

    async def topic(value: object) -> None:
        seen["topic"].append(value)

    async def envelope(message: Message) -> None:
        seen["envelope"].append(message.data)

    async def batch(events: list[UserSignedUp]) -> None:
        seen["batch"].extend(events)

    bus.subscribe(UserSignedUp, typed, group="typed", retry=Retry(max_attempts=5))
    bus.subscribe("member.signed_up", topic, group="topic", retry=Retry(max_attempts=5))
    bus.subscribe("member.signed_up", envelope, group="envelope")
    bus.subscribe(UserSignedUp, batch, group="batch")
    raw = b'{"user_id": 1, "email": "a@x"}'
    bad = Message("member.signed_up", tidings.Malformed(raw, "its headers are not JSON"))
    async with bus:
        await bus.publish(bad)
        await bus.publish(Message("member.signed_up", b'{"user_id": 2, "email": "b@x"}'))
    good = UserSignedUp(2, "b@x")
    assert seen == {"typed": [good], "topic": [good], "envelope": [good], "batch": [good]}
    letters = await bus.dead_letters.list()
    assert sorted(letter.group for letter in letters) == ["batch", "envelope", "topic", "typed"]
    for letter in letters:
        assert letter.error_type == "tidings.errors.DecodeError"
        assert "its headers are not JSON" in letter.error_message
        assert (letter.data, letter.attempts, letter.message_id) == (raw, 1, bad.id)


async def test_a_failing_dead_letter_store_never_loses_the_message() -> None:
    class Refusing(tidings.dead_letters.MemoryDeadLetterStore):
        failures = 2

        async def add(self, letter: tidings.DeadLetter) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("disk full")
            await super().add(letter)

    store = Refusing()
    bus = Bus(dead_letters=store, clock=FakeClock())
    calls = 0

    def broken(event: UserSignedUp) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("no")

    bus.subscribe(UserSignedUp, broken)
    async with bus:
        await bus.publish(UserSignedUp(1, "x"))
    assert calls == 3  # delivered again each time the store refused
    assert len(await store.list()) == 1


async def test_middleware_compose_first_listed_outermost() -> None:
    order: list[str] = []

    def mark(name: str) -> tidings.Middleware:
        def wrap(handler: tidings.Handler) -> tidings.Handler:
            async def marked(message: Message) -> None:
                order.append(f"{name} in")
                await handler(message)
                order.append(f"{name} out")

            return marked

        return wrap

    bus = Bus(middleware=[mark("bus")])
    bus.subscribe(
        UserSignedUp, lambda e: order.append("handler"), middleware=[mark("a"), mark("b")]
    )
    await bus.publish_and_wait(UserSignedUp(1, "x"))
    assert order == ["bus in", "a in", "b in", "handler", "b out", "a out", "bus out"]


async def test_middleware_stack_outside_a_bus(caplog: pytest.LogCaptureFixture) -> None:
    store = tidings.dead_letters.MemoryDeadLetterStore()
    clock = FakeClock()
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    stack = chain(
        dead_letter(store, topic="t", group="g", codec=tidings.JsonCodec(), clock=clock),
        log_failures("mailer"),
        retry(Retry(max_attempts=2, initial_delay=1, jitter=False), clock),
        timeout(5),
    )(handler)
    with caplog.at_level(logging.WARNING), pytest.raises(tidings.DeadLettered) as raised:
        await stack(Message("t", {"a": 1}))
    assert calls == 2
    assert clock.sleeps == [1]
    assert isinstance(raised.value.__cause__, ConnectionError)
    (letter,) = await store.list()
    assert letter.attempts == 2
    assert letter.id == raised.value.dead_letter_id
    assert "mailer failed" in caplog.text


async def test_timeout_middleware_raises_handler_timeout() -> None:
    async def slow(message: Message) -> None:
        await asyncio.Event().wait()

    with pytest.raises(tidings.HandlerTimeout, match=r"within 0\.01s"):
        await timeout(0.01, "slow")(slow)(Message("t", None))
