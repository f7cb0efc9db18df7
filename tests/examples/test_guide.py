"""The Go guide's programs, ported (examples/guide/): each runs and prints what its Go original
prints; and the guide's testing patterns (synchronous publish, a recording stand-in for the
broker) on the signup services."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from examples.guide.signup import build

from tidings.examples.signup.events import UserSignedUp, sample_signups
from tidings.testing import Recorder

ROOT = Path(__file__).parents[2]

PRINTS = {
    "bus": """\
email: welcome ada@example.com
analytics: user 1 created
PublishSync: 2 handlers done, ok=True
email: welcome linus@example.com
analytics: user 2 created
closed
""",
    "processor": """\
order 1: sent
order 2: sent
order 3: sent
order 4: sent
order 5: sent
order 6: not sent: the buffer stayed full until the deadline
results: [1, 2, 3, 5]
errors: ['order 4: card declined']
""",
    "account": """\
balance: 70
refused: cannot withdraw 500 from a balance of 70
rebuilt from 3 events: balance 70, version 3
loaded: balance 70, version 3
""",
    "retry_dlq": """\
payment 1: attempt 1 failed: gateway timeout, retrying in 0.01s
payment 1: attempt 2 ok
payment 2: attempt 1 failed: gateway refused the card, retrying in 0.01s
payment 2: attempt 2 failed: gateway refused the card, retrying in 0.02s
payment 2: attempt 3 failed: gateway refused the card
dead letter: payment 2 after 3 attempts: gateway refused the card
replayed: 1
payment 2: attempt 1 ok
dead letters left: 0
""",
    "signup": """\
analytics: user 1 signed up
analytics: user 2 signed up
analytics: user 3 signed up
analytics: user 250 signed up
crm: contact Grace Hopper
crm: contact Alan Turing
crm: contact Edsger Dijkstra
email: welcome mail to grace.hopper.1@example.com
email: welcome mail to alan.turing.2@example.com
email: welcome mail to edsger.dijkstra.3@example.com
email: welcome mail to ada.turing.250.example.com
monitor: analytics 4 ok 0 failed, crm 3 ok 1 failed, email 4 ok 0 failed
dead letters: [('crm', "no contact without an address: 'ada.turing.250.example.com'")]
""",
}
CONCURRENT = {"signup": 11}
"""Programs whose first lines come from several consumers at once: their order varies, as the
Go program's goroutines' does, so these lines are compared as a set, the rest line by line."""


def run(program: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", f"examples.guide.{program}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("program", sorted(PRINTS))
def test_the_program_prints_what_the_go_program_prints(program: str) -> None:
    printed, expected = run(program), PRINTS[program].splitlines()
    # bus: the queued event's two lines (after PublishSync's) come in either order
    if program == "bus":
        assert printed[:3] == expected[:3]
        assert sorted(printed[3:5]) == sorted(expected[3:5])
        assert printed[5:] == expected[5:]
        return
    concurrent = CONCURRENT.get(program, 0)
    assert sorted(printed[:concurrent]) == sorted(expected[:concurrent])
    assert printed[concurrent:] == expected[concurrent:]


async def test_with_synchronous_publish_a_test_sees_every_service_done() -> None:
    services = build()
    (user,) = sample_signups(1)
    result = await services.bus.publish_and_wait(user)  # no consumers, nothing to wait for
    assert result.ok, result.outcomes
    assert services.email.sent == [user.email]
    assert services.analytics.signups == 1
    assert services.crm.contacts == {user.user_id: user.name}


async def test_a_failing_service_shows_in_the_result_not_in_the_publisher() -> None:
    services = build()
    (bad,) = sample_signups(1, start=250)
    result = await services.bus.publish_and_wait(bad)
    assert [type(error).__name__ for error in result.errors] == ["InvalidAddress"]
    assert services.email.sent == [bad.email], "the other services still ran"
    (letter,) = await services.bus.dead_letters.list()
    assert (letter.group, letter.attempts) == ("crm", 1), "a bad address is not retried"


async def test_a_recorder_stands_in_for_the_mock_broker() -> None:
    services = build()
    recorder = Recorder(services.bus)
    async with services.bus:
        for user in sample_signups(3):
            await services.bus.publish(user)
        signups = await recorder.wait_for(UserSignedUp, count=3)
    assert [s.user_id for s in signups] == [1, 2, 3]
