"""The in-process event bus: Subscribe, Publish and PublishSync.

The Go program::

    bus := NewEventBus(100)                                  // 100: each subscriber's buffer
    bus.Subscribe("user.created", func(e Event) { fmt.Println("email: welcome", e.Email) })
    bus.Subscribe("user.created", func(e Event) { fmt.Println("analytics: user", e.ID, "created") })
    bus.PublishSync(Event{ID: 1, Email: "ada@example.com"})  // returns once both handlers ran
    bus.Publish(Event{ID: 2, Email: "linus@example.com"})    // returns once queued
    bus.Close()                                              // waits for the queued event
    fmt.Println("closed")

Run: ``python -m examples.guide.bus``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import tidings

__all__ = ["UserCreated", "bus", "main"]


@tidings.event("guide.user_created")
@dataclass(frozen=True, slots=True)
class UserCreated:
    user_id: int
    email: str


bus = tidings.Bus(capacity=100)  # each group's channel holds 100 waiting events


@bus.subscribe(UserCreated, group="email")
def welcome(event: UserCreated) -> None:
    print(f"email: welcome {event.email}")


@bus.subscribe(UserCreated, group="analytics")
def count(event: UserCreated) -> None:
    print(f"analytics: user {event.user_id} created")


async def main() -> None:
    # PublishSync: this process's handlers run now, in subscription order; no consumer involved
    result = await bus.publish_and_wait(UserCreated(1, "ada@example.com"))
    print(f"PublishSync: {len(result.outcomes)} handlers done, ok={result.ok}")
    async with bus:  # starts one consumer per group
        await bus.publish(UserCreated(2, "linus@example.com"))  # Publish: queued
    print("closed")  # leaving `async with` handled everything queued


if __name__ == "__main__":
    asyncio.run(main())
