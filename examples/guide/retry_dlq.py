"""Retry with exponential backoff, then a dead-letter queue, then a replay.

The Go program::

    handler := WithRetry(charge, 3, 10*time.Millisecond)  // waits 10ms, 20ms, … between tries
    handler(Payment{ID: 1})      // fails once (gateway timeout), then succeeds
    handler(Payment{ID: 2})      // declined every time: goes to the DLQ after 3 attempts
    for _, d := range dlq.List() {
        fmt.Printf("dead letter: payment %d after %d attempts: %v\\n", d.ID, d.Attempts, d.Err)
    }
    gateway.Fix()
    dlq.Replay()                 // payment 2 succeeds now

``charge`` prints each attempt and the wait before the next, as the Go ``WithRetry`` loop does.
Run: ``python -m examples.guide.retry_dlq``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import tidings

__all__ = ["Payment", "main"]

RETRY = tidings.Retry(max_attempts=3, initial_delay=0.01, multiplier=2.0, jitter=False)
"""Three attempts, 10 ms then 20 ms apart (no jitter, so the program prints the same every run)."""


@tidings.event("guide.payment")
@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: int


class Gateway:
    """Times out once for payment 1 and declines payment 2 until it is fixed."""

    def __init__(self) -> None:
        self.fixed = False

    def charge(self, payment: Payment, attempt: int) -> None:
        if payment.payment_id == 1 and attempt == 1:
            raise TimeoutError("gateway timeout")
        if payment.payment_id == 2 and not self.fixed:
            raise ConnectionRefusedError("gateway refused the card")


async def main() -> None:
    gateway = Gateway()
    bus = tidings.Bus()

    @bus.subscribe(Payment, group="payments", retry=RETRY)
    def charge(payment: Payment) -> None:
        here = tidings.current()  # where the handler is: the message, the attempt, the route
        assert here is not None
        attempt = here.attempt
        try:
            gateway.charge(payment, attempt)
        except Exception as error:
            retrying = f", retrying in {RETRY.backoff(attempt):.2f}s"
            last = attempt == RETRY.max_attempts
            print(f"payment {payment.payment_id}: attempt {attempt} failed: {error}"
                  f"{'' if last else retrying}")  # fmt: skip
            raise
        print(f"payment {payment.payment_id}: attempt {attempt} ok")

    async with bus:
        for payment_id in (1, 2):
            await bus.publish_and_wait(Payment(payment_id))  # retries included
        for letter in await bus.dead_letters.list():
            print(
                f"dead letter: payment {bus.codec.decode(letter.data, into=Payment).payment_id}"
                f" after {letter.attempts} attempts: {letter.error_message}"
            )
        gateway.fixed = True
        print(f"replayed: {await bus.dead_letters.replay()}")
    print(f"dead letters left: {len(await bus.dead_letters.list())}")


if __name__ == "__main__":
    asyncio.run(main())
