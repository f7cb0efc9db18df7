"""Helpers for transport tests: consume a subscription in the background and await conditions.

Nothing here sleeps to synchronise: a test states what it waits for (``await receiver.until(...)``)
and gets an AssertionError naming it, with what did arrive, when the time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from tidings.message import Message
from tidings.transports.base import Delivery, Subscription, Transport

__all__ = [
    "PROBE_HEADER",
    "Receiver",
    "Settle",
    "TransportFactory",
    "ack",
    "opened",
    "prime",
    "unique",
    "until",
    "waiting",
]

PROBE_HEADER = "tidings-test-probe"
"""Marks messages published only to find out that a subscription receives; receivers skip them."""

TransportFactory = Callable[[], Transport]
"""Returns a new transport, not yet started, on the same broker and namespace every time."""

Settle = Callable[[Delivery], Awaitable[None]]


async def ack(delivery: Delivery) -> None:
    await delivery.ack()


def unique(prefix: str) -> str:
    """A name no other test run uses: ``prefix.3f2a…``."""
    return f"{prefix}.{uuid.uuid4().hex[:16]}"


@contextlib.asynccontextmanager
async def opened(factory: TransportFactory) -> AsyncIterator[Transport]:
    """A started transport from ``factory``, closed on exit."""
    transport = factory()
    await transport.start()
    try:
        yield transport
    finally:
        await transport.aclose()


@contextlib.asynccontextmanager
async def waiting(seconds: float, what: str) -> AsyncIterator[None]:
    """Fail with ``what`` if the block takes longer than ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise AssertionError(f"timed out after {seconds:g}s waiting for {what}") from None


@dataclass
class _Waiter:
    condition: Callable[[], bool]
    done: asyncio.Future[None]


class Receiver:
    """Iterates a subscription in a task, settling each delivery with ``settle`` (ack by
    default) and keeping every delivery that is not a probe in arrival order."""

    def __init__(self, subscription: Subscription, settle: Settle = ack, timeout: float = 30.0):
        self.subscription = subscription
        self.deliveries: list[Delivery] = []
        self.probes = 0
        self.timeout = timeout
        self._settle = settle
        self._waiters: list[_Waiter] = []
        self._error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def messages(self) -> list[Message]:
        return [d.message for d in self.deliveries]

    @property
    def ids(self) -> set[str]:
        return {d.message.id for d in self.deliveries}

    async def _run(self) -> None:
        try:
            async for batch in self.subscription:
                for delivery in batch:
                    if PROBE_HEADER in delivery.message.headers:
                        self.probes += 1
                        await delivery.ack()
                    else:
                        self.deliveries.append(delivery)
                        await self._settle(delivery)
                    self._check()
        except Exception as exc:
            self._error = exc
        finally:
            self._check(ended=True)

    def _check(self, ended: bool = False) -> None:
        for waiter in list(self._waiters):
            if waiter.done.done():
                continue
            if self._error is not None:
                waiter.done.set_exception(self._error)
            elif waiter.condition():
                waiter.done.set_result(None)
            elif ended:
                waiter.done.set_exception(AssertionError("the subscription ended"))

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Return once ``condition()`` holds; checked after every delivery."""
        await until([self], condition, what)

    async def until_ids(self, ids: Sequence[str] | set[str], what: str = "") -> None:
        """Return once every id in ``ids`` was received."""
        wanted = set(ids)
        await self.until(lambda: wanted <= self.ids, what or f"{len(wanted)} messages")

    def check(self) -> None:
        """Raise what ended the iteration, if it failed."""
        if self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        """Close the subscription and wait for the iteration to end."""
        await self.subscription.aclose()
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            raise AssertionError("the subscription did not end after aclose()") from None


async def until(receivers: Sequence[Receiver], condition: Callable[[], bool], what: str) -> None:
    """Return once ``condition()`` holds, checked after every delivery to any of ``receivers``;
    fail naming ``what`` after the longest of their timeouts."""
    for receiver in receivers:
        if receiver._error is not None:
            raise receiver._error
    if condition():
        return
    waiter = _Waiter(condition, asyncio.get_running_loop().create_future())
    for receiver in receivers:
        receiver._waiters.append(waiter)
    timeout = max(r.timeout for r in receivers)
    try:
        async with asyncio.timeout(timeout):
            await waiter.done
    except TimeoutError:
        got = ", ".join(f"{len(r.deliveries)} ({len(r.ids)} distinct)" for r in receivers)
        raise AssertionError(
            f"timed out after {timeout:g}s waiting for {what}; received {got} messages"
        ) from None
    finally:
        for receiver in receivers:
            receiver._waiters.remove(waiter)


async def prime(transport: Transport, topic: str, receivers: Sequence[Receiver]) -> int:
    """Publish probes to ``topic`` until every receiver got one: from then on they receive what
    is published. Needed wherever a subscription is made: a new one starts at the end of the
    log on some brokers, joining a consumer group takes a while, and where a new group starts
    with what the log still holds, that may be pruned before its first read. Returns how many
    probes it published."""
    published = 0
    timeout = max(r.timeout for r in receivers)
    # a pattern is primed through a concrete topic it matches: brokers refuse to publish to one
    concrete = ".".join("probe" if token in ("*", ">") else token for token in topic.split("."))
    async with waiting(timeout, f"subscriptions to {topic!r} to receive"):
        while not all(r.probes for r in receivers):
            probe = Message("tidings.probe", b"{}", {PROBE_HEADER: "1"}, unique("probe"))
            await transport.publish(concrete, [probe])
            published += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await until(receivers, lambda: all(r.probes for r in receivers), "probes")
    return published
