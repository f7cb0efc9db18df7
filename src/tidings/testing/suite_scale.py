"""Suite cases: one group's work spread over worker processes, each key still in order.

Three real worker processes (:mod:`tidings.testing.scale_worker`) subscribe to one topic in one
group with ``ordered=True``; a handler waits a few milliseconds, as for its I/O. Keys are
published concurrently, each key's messages one after another. The cases check that every
message is handled, that each key's messages are handled in publish order across the
processes, and that every worker does a fair part (at least 15%); then that killing a worker
with SIGKILL mid-stream loses nothing and redelivers only what it had not settled, and that a
worker started mid-stream takes work over.

They run where the transport's features say ``ordered_per_key`` (which means across processes,
not only within one) and the suite provides ``scale_url``: the URL of the broker, on the
suite's namespace, that worker processes open (with a short lease where the transport has
one, so that a killed worker's messages come again soon).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tidings.message import Message
from tidings.testing.receiver import Receiver, TransportFactory, prime, unique
from tidings.testing.scale import Workers, check_order
from tidings.testing.suite_base import TransportCases
from tidings.transports import from_url
from tidings.transports.base import Transport

__all__ = ["ScaleOutCases"]

_KEYS = 90
_DELAY = 0.005
_FAIR = 0.15


class ScaleOutCases(TransportCases):
    """Scale-out across processes; see the module docstring."""

    @pytest.fixture
    def scale_url(self) -> str | None:
        """The broker's URL for worker processes; None: the cases are skipped."""
        return None

    async def test_scale_out_spreads_in_order(
        self, transport_factory: TransportFactory, scale_url: str | None
    ) -> None:
        """450 messages over 90 keys, 3 workers: all handled once, in order, fairly spread
        (with fewer keys a hash splits them too unevenly to ask 15% of each worker)."""
        await self.spread(transport_factory, scale_url, 5)

    async def test_scale_out_failover(
        self, transport_factory: TransportFactory, scale_url: str | None
    ) -> None:
        """A worker killed mid-stream: nothing lost, keys in order, and only what it had not
        settled is handled again."""
        url = self._url(transport_factory, scale_url)
        async with self._workers(url) as workers, self._publisher(workers) as publish:
            names = await self._start(workers, 3)

            async def crash() -> None:
                await workers.until(lambda: len(workers.handled) >= 150, "150 handled")
                await workers.kill(names[0])

            await asyncio.gather(publish(0, 7), crash())
            await self._all_handled(workers, publish.count)
            # The dead worker's unsettled messages may still be coming again; a last message
            # of each key comes after them, so once it is handled the redeliveries are over.
            await publish(7, 8)
            await self._all_handled(workers, publish.count)
        counts = Counter((h.key, h.n) for h in workers.handled)
        first: dict[tuple[str, int], str] = {}
        for record in sorted(workers.handled, key=lambda h: h.start):
            first.setdefault((record.key, record.n), record.worker)
        again = [message for message, times in counts.items() if times > 1]
        assert all(first[m] == names[0] for m in again), "a message settled came again"
        check_order(workers.handled)

    async def test_scale_out_join(
        self, transport_factory: TransportFactory, scale_url: str | None
    ) -> None:
        """A worker started mid-stream takes a part of the work; keys stay in order."""
        url = self._url(transport_factory, scale_url)
        async with self._workers(url) as workers, self._publisher(workers) as publish:
            await self._start(workers, 2)
            await publish(0, 4)
            await workers.until(lambda: len(workers.handled) >= 60, "60 handled")
            await workers.start("late")
            n = 10
            while n < 20 or not workers.share("late"):  # until it was given keys
                await publish(n, n + 1)
                await self._all_handled(workers, publish.count)  # paced by the handlers
                n += 1
        # Brokers that move partitions on a join may deliver again what the previous owner
        # handled and had not committed yet; in order all the same.
        check_order(workers.handled)

    @pytest.mark.stress
    async def test_stress_scale_out(
        self, transport_factory: TransportFactory, scale_url: str | None
    ) -> None:
        await self.spread(transport_factory, scale_url, 67)

    # -- helpers ------------------------------------------------------------------------------

    async def spread(self, factory: TransportFactory, url: str | None, each: int) -> None:
        url = self._url(factory, url)
        async with self._workers(url) as workers, self._publisher(workers) as publish:
            names = await self._start(workers, 3)
            await publish(0, each)
            await self._all_handled(workers, publish.count)
            for name in names:
                assert await workers.stop(name) == 0, f"worker {name} did not drain cleanly"
        assert len(workers.handled) == publish.count, "a message was handled twice"
        check_order(workers.handled)
        for name in names:
            assert workers.share(name) >= _FAIR, (
                f"worker {name} did {workers.share(name):.0%} of the work"
            )

    def _url(self, factory: TransportFactory, url: str | None) -> str:
        if not self.features(factory).ordered_per_key:
            pytest.skip("the transport does not keep a key's messages in order across processes")
        if url is None:
            pytest.skip("no scale_url fixture: the suite does not run worker processes")
        return url

    def _workers(self, url: str) -> Workers:
        return Workers(url, unique("suite.scale"), unique("group"), delay=_DELAY, timeout=60.0)

    async def _start(self, workers: Workers, count: int) -> list[str]:
        names = [f"w{n}" for n in range(1, count + 1)]
        await asyncio.gather(*(workers.start(name) for name in names))
        return names

    @contextlib.asynccontextmanager
    async def _publisher(self, workers: Workers) -> AsyncIterator[_Publisher]:
        transport = from_url(workers.url)
        await transport.start()
        try:
            # the group exists before publishing (see prime)
            receiver = Receiver(transport.subscribe(workers.topic, group=workers.group))
            await prime(transport, workers.topic, [receiver])
            await receiver.aclose()
            yield _Publisher(transport, workers.topic)
        finally:
            await transport.aclose()

    async def _all_handled(self, workers: Workers, total: int) -> None:
        await workers.until(
            lambda: len({(h.key, h.n) for h in workers.handled}) >= total,
            f"all {total} messages handled",
        )


class _Publisher:
    """Publishes numbered messages to each of the keys: the keys concurrently, each key's
    messages one after another."""

    def __init__(self, transport: Transport, topic: str) -> None:
        self.transport = transport
        self.topic = topic
        self.count = 0

    async def __call__(self, start: int, stop: int) -> None:
        """Publish numbers ``start`` to ``stop - 1`` of every key."""
        await asyncio.gather(*(self._key(f"key-{k}", start, stop) for k in range(_KEYS)))

    async def _key(self, key: str, start: int, stop: int) -> None:
        for n in range(start, stop):
            message = Message("suite.scaled", b"{}", {"n": str(n)}, key)
            await self.transport.publish(self.topic, [message])
            self.count += 1
