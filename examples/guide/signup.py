"""User signup: email, analytics and CRM services react to UserSignedUp; a monitor counts.

The Go program::

    bus.Subscribe("user.signed_up", email.Handle)      // sends a welcome mail
    bus.Subscribe("user.signed_up", analytics.Handle)  // counts signups
    bus.Subscribe("user.signed_up", crm.Handle)        // creates a contact; refuses bad addresses
    monitor := NewMonitor(bus)                         // counts handled and failed, per service
    for _, u := range users { users.SignUp(u) }        // publishes UserSignedUp
    bus.Close()
    fmt.Println(monitor.Report())

Each service is its own consumer group, so each gets every signup and none waits for another;
the lines the handlers print interleave differently from run to run, as the goroutines' do.
Run: ``python -m examples.guide.signup``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import tidings
from tidings.examples.signup.events import UserSignedUp, sample_signups

__all__ = ["Analytics", "Crm", "Email", "Monitor", "Services", "build", "main"]


class InvalidAddress(ValueError):
    pass


@dataclass
class Email:
    sent: list[str] = field(default_factory=list)

    async def handle(self, event: UserSignedUp) -> None:
        await asyncio.sleep(0)  # the mail server's round trip
        self.sent.append(event.email)
        print(f"email: welcome mail to {event.email}")


@dataclass
class Analytics:
    signups: int = 0

    def handle(self, event: UserSignedUp) -> None:
        self.signups += 1
        print(f"analytics: user {event.user_id} signed up")


@dataclass
class Crm:
    contacts: dict[int, str] = field(default_factory=dict)

    async def handle(self, event: UserSignedUp) -> None:
        if "@" not in event.email:
            raise InvalidAddress(f"no contact without an address: {event.email!r}")
        self.contacts[event.user_id] = event.name
        print(f"crm: contact {event.name}")


@dataclass(frozen=True)
class Services:
    bus: tidings.Bus
    email: Email
    analytics: Analytics
    crm: Crm


def build(bus: tidings.Bus | None = None) -> Services:
    """The three services subscribed to ``bus`` (a new in-process bus by default)."""
    bus = bus or tidings.Bus()
    services = Services(bus, Email(), Analytics(), Crm())
    # The email service waits on I/O: several at once. Analytics never waits: one at a time.
    bus.subscribe(UserSignedUp, services.email.handle, group="email", concurrency=20)
    bus.subscribe(UserSignedUp, services.analytics.handle, group="analytics")
    crm_retry = tidings.Retry(max_attempts=2, initial_delay=0.01, give_up_on=(InvalidAddress,))
    bus.subscribe(UserSignedUp, services.crm.handle, group="crm", concurrency=4, retry=crm_retry)
    return services


class Monitor:
    """Counts the final outcome of every signup, per service (group), from ``bus.outcomes()``."""

    def __init__(self) -> None:
        self.handled: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    async def watch(self, outcomes: tidings.OutcomeStream) -> None:
        async for outcome in outcomes:  # ends when the bus has closed
            match outcome:
                case tidings.Handled(group=group):
                    self.handled[group] += 1
                case tidings.Failed(group=group):
                    self.failed[group] += 1

    def report(self) -> str:
        groups = sorted(self.handled.keys() | self.failed.keys())
        return ", ".join(f"{g} {self.handled[g]} ok {self.failed[g]} failed" for g in groups)


async def main() -> None:
    services = build()
    bus, monitor = services.bus, Monitor()
    users = [*sample_signups(3), *sample_signups(1, start=250)]  # user 250 typed no "@"
    async with bus:
        watching = asyncio.create_task(monitor.watch(bus.outcomes()))
        for user in users:
            await bus.publish(user)
    await watching
    print(f"monitor: {monitor.report()}")
    letters = await bus.dead_letters.list()
    print(f"dead letters: {[(letter.group, letter.error_message) for letter in letters]}")


if __name__ == "__main__":
    asyncio.run(main())
