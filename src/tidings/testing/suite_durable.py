"""Suite cases: nothing published is lost across closes, reopens and broker restarts."""

from __future__ import annotations

import asyncio

import pytest

from tidings.errors import ClosedError
from tidings.testing.receiver import Receiver, TransportFactory, ack, opened, unique, waiting
from tidings.testing.suite_base import RestartService, TransportCases, messages
from tidings.transports.base import Delivery

__all__ = ["DurabilityCases"]


class DurabilityCases(TransportCases):
    """Persistence: reopening, unsettled deliveries, closing publishers, restarts."""

    async def test_reopen_loses_nothing(self, transport_factory: TransportFactory) -> None:
        """Subscribers that close after a part of the messages and reopen miss none."""
        if not self.features(transport_factory).persistent:
            pytest.skip("the transport is not persistent")
        topic, group, sent = unique("suite.reopen"), unique("group"), messages(100)
        seen: set[str] = set()
        async with opened(transport_factory) as transport:
            (first,) = await self.receive(transport, topic, group)
            await transport.publish(topic, sent)
            await first.until(lambda: len(first.ids) >= 1, "the first message")
        seen |= first.ids  # read once closed: it acked everything it received until then
        for _ in range(20):
            if {m.id for m in sent} <= seen:
                break
            seen |= await self._some_more(transport_factory, topic, group, seen, len(sent))
        assert {m.id for m in sent} <= seen

    async def _some_more(
        self, factory: TransportFactory, topic: str, group: str, seen: set[str], total: int
    ) -> set[str]:
        """Open, receive until 25 more (or all) were seen, close; returns what arrived."""
        wanted = min(len(seen) + 25, total)
        async with opened(factory) as transport:
            (receiver,) = await self.receive(transport, topic, group)
            await receiver.until(lambda: len(receiver.ids | seen) >= wanted, "25 more messages")
        return receiver.ids  # read once closed: it acked everything it received until then

    async def test_unsettled_come_again(self, transport_factory: TransportFactory) -> None:
        """Deliveries neither acked nor nacked when their transport closes come again."""
        if not self.features(transport_factory).persistent:
            pytest.skip("the transport is not persistent")
        topic, group, sent = unique("suite.unsettled"), unique("group"), messages(5)

        async def keep(delivery: Delivery) -> None:
            pass

        async with opened(transport_factory) as transport:
            (holder,) = await self.receive(transport, topic, group, settle=keep)
            await transport.publish(topic, sent)
            await holder.until_ids([m.id for m in sent])
        async with opened(transport_factory) as transport:
            (receiver,) = await self.receive(transport, topic, group)
            await receiver.until_ids([m.id for m in sent], "the unsettled messages again")
            await receiver.aclose()

    async def test_publisher_close_loses_nothing(self, transport_factory: TransportFactory) -> None:
        """Every publish that returned reaches subscribers, even when its transport closed right
        after (or during the other publishes)."""
        topic, group = unique("suite.pubclose"), unique("group")
        batches = [messages(10) for _ in range(10)]
        async with opened(transport_factory) as transport:
            (receiver,) = await self.receive(transport, topic, group)
            publisher = transport_factory()
            await publisher.start()
            tasks = [asyncio.ensure_future(publisher.publish(topic, b)) for b in batches]
            results = await asyncio.gather(*tasks, publisher.aclose(), return_exceptions=True)
            accepted = [
                m.id for b, r in zip(batches, results, strict=False) if r is None for m in b
            ]
            for result in results:
                assert result is None or isinstance(result, ClosedError), result
            await receiver.until_ids(accepted, "every message whose publish returned")
            await receiver.aclose()

    async def test_concurrent_close(self, transport_factory: TransportFactory) -> None:
        """Ten subscribed transports closed at once (twice each) leave the broker usable."""
        topic, group = unique("suite.close"), unique("group")
        transports = [transport_factory() for _ in range(10)]
        await asyncio.gather(*(t.start() for t in transports))
        receivers = [
            Receiver(t.subscribe(topic, group=group), ack, self.timeout) for t in transports
        ]
        await asyncio.gather(*(t.aclose() for t in transports + transports))
        for receiver in receivers:
            await receiver.aclose()
            receiver.check()
        with pytest.raises(ClosedError):
            await transports[0].publish(topic, messages(1))
        sent = messages(50)
        async with opened(transport_factory) as transport:
            (receiver,) = await self.receive(transport, topic, group)
            await transport.publish(topic, sent)
            await receiver.until_ids([m.id for m in sent])
            await receiver.aclose()

    # -- groups and order ---------------------------------------------------------------------

    async def test_new_group_replays_history(self, transport_factory: TransportFactory) -> None:
        if not self.features(transport_factory).replays_history:
            pytest.skip("a new group starts at the end of the log")
        topic, sent = unique("suite.history"), messages(20)
        async with opened(transport_factory) as transport:
            (first,) = await self.receive(transport, topic, unique("group"))
            await transport.publish(topic, sent)
            await first.until_ids([m.id for m in sent])
            (late,) = await self.receive(transport, topic, unique("group"))
            await late.until_ids([m.id for m in sent], "a new group to get the history")
            await first.aclose()
            await late.aclose()

    # -- the broker going away ----------------------------------------------------------------

    async def test_broker_restart(
        self, transport_factory: TransportFactory, restart_service: RestartService | None
    ) -> None:
        """A running subscription and publisher carry on after the broker restarted."""
        if restart_service is None:
            pytest.skip("no restart_service fixture for this transport")
        if not self.features(transport_factory).persistent:
            pytest.skip("the transport is not persistent")
        topic, before, after = unique("suite.restart"), messages(20), messages(20)
        async with opened(transport_factory) as transport:
            (receiver,) = await self.receive(transport, topic, unique("group"))
            await transport.publish(topic, before)
            await receiver.until_ids([m.id for m in before])
            await restart_service()
            async with waiting(self.timeout, "a publish to succeed after the restart"):
                while True:
                    try:
                        await transport.publish(topic, after)
                        break
                    except ClosedError:
                        raise
                    except Exception:  # reconnecting; a real publisher retries too
                        await asyncio.sleep(0.2)
            await receiver.until_ids([m.id for m in after], "messages after the restart")
            await receiver.aclose()
