"""A processor: a buffered channel, a worker pool, ``Send(ctx)``, results and errors, shutdown.

The Go program::

    p := NewProcessor(3, 2)              // a channel buffering 3 orders, 2 workers
    go func() { for r := range p.Results() { results = append(results, r) } }()
    go func() { for err := range p.Errors() { errs = append(errs, err) } }()
    for id := 1; id <= 6; id++ {
        ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
        if err := p.Send(ctx, Order{ID: id}); err != nil {
            fmt.Printf("order %d: not sent: %v\\n", id, err)   // the buffer stayed full
        } else {
            fmt.Printf("order %d: sent\\n", id)
        }
        cancel()
    }
    p.Shutdown()                          // close the channel, wait for the workers
    fmt.Println("results:", results)      // sorted
    fmt.Println("errors:", errs)

The workers are busy until every send was tried, so two orders run, three wait in the buffer and
the sixth send gives up at its deadline. Order 4 fails. Run: ``python -m examples.guide.processor``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import tidings

__all__ = ["Order", "main"]


@tidings.event("guide.order")
@dataclass(frozen=True, slots=True)
class Order:
    order_id: int


class CardDeclined(Exception):
    pass


async def main() -> None:
    bus = tidings.Bus(capacity=3)  # NewProcessor(3, …): three orders may wait
    busy = asyncio.Event()  # the workers hold on until every send was tried

    # two workers; a failed order goes to the errors at once (no retry)
    @bus.subscribe(Order, group="orders", concurrency=2, retry=tidings.Retry(max_attempts=1))
    async def process(order: Order) -> None:
        await busy.wait()
        if order.order_id == 4:
            raise CardDeclined(f"order {order.order_id}: card declined")

    results: list[int] = []
    errors: list[str] = []

    async def watch(outcomes: tidings.OutcomeStream) -> None:  # Results() and Errors()
        async for outcome in outcomes:
            match outcome:
                case tidings.Handled(message=message):
                    results.append(message.data.order_id)
                case tidings.Failed(error_message=error):
                    errors.append(error)

    async with bus:
        watcher = asyncio.create_task(watch(bus.outcomes()))
        for order_id in range(1, 7):
            try:
                async with asyncio.timeout(0.05):  # Send(ctx) with a deadline
                    await bus.publish(Order(order_id))
                print(f"order {order_id}: sent")
            except TimeoutError:
                print(f"order {order_id}: not sent: the buffer stayed full until the deadline")
        busy.set()
    # Shutdown: leaving `async with` handled every order sent, then closed the bus
    await watcher
    print("results:", sorted(results))
    print("errors:", errors)


if __name__ == "__main__":
    asyncio.run(main())
