"""B8: the default concurrency, on the signup flow of the Go guide written the obvious way.

100 signups are published at once to three services, each an ``async def`` subscribed with no
options: the email service waits 100 ms on its mail server, analytics and the CRM 5 ms. The
limit is what the Go original does, a Task per event per service (``asyncio.gather``); the
rows are the bus with its default, and with ``concurrency=1``, the default before it changed.
Run: ``python -m bench.b8_defaults [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import tidings
from bench.common import Row, best_of_async, print_table

MAIL_SECONDS = 0.1
API_SECONDS = 0.005


@tidings.event("bench.user_signed_up")
@dataclass(frozen=True)
class UserSignedUp:
    user_id: int


async def send_welcome(event: UserSignedUp) -> None:
    await asyncio.sleep(MAIL_SECONDS)


async def track(event: UserSignedUp) -> None:
    await asyncio.sleep(API_SECONDS)


async def add_to_crm(event: UserSignedUp) -> None:
    await asyncio.sleep(API_SECONDS)


SERVICES = (send_welcome, track, add_to_crm)


async def run_limit(n: int) -> int:
    await asyncio.gather(*(service(UserSignedUp(i)) for i in range(n) for service in SERVICES))
    return n


async def run_bus(n: int, **options: int) -> int:
    bus = tidings.Bus()
    for service in SERVICES:
        bus.subscribe(UserSignedUp, service, **options)  # type: ignore[call-overload]
    async with bus:  # leaving it waits until every signup went through every service
        await bus.publish_many([UserSignedUp(i) for i in range(n)])
    return n


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = 100
    repeat = 1 if args.quick else 3
    rows = [
        Row("limit: a Task per event", *best_of_async(lambda: run_limit(n), repeat)),
        Row("tidings Bus, the default", *best_of_async(lambda: run_bus(n), repeat)),
        Row(
            "tidings Bus, concurrency=1",
            *best_of_async(lambda: run_bus(n, concurrency=1), 1),
            "the default before",
        ),
    ]
    for row in rows:
        row.note = f"{row.seconds:.2f} s {row.note}".rstrip()
    return print_table(
        f"B8: {n} signups, three services, a 100 ms mail call (target >= 10x concurrency=1)",
        rows,
        rows[0].name,
        args.json,
    )


if __name__ == "__main__":
    main()
