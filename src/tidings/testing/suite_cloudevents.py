"""Suite cases: CloudEvents in binary mode, read from another producer and written for other
consumers (part of TransportSuite)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tidings.bus import Bus
from tidings.cloudevents import CloudEvents
from tidings.message import Message
from tidings.testing.receiver import PROBE_HEADER, TransportFactory, unique
from tidings.testing.suite_bus import BusCases, SuiteEvent, _Handled
from tidings.testing.suite_foreign import ForeignPublish

__all__ = ["CloudEventsCases"]


class CloudEventsCases(BusCases):
    async def test_cloudevents_from_another_producer(
        self, transport_factory: TransportFactory, foreign_publish: ForeignPublish | None
    ) -> None:
        """A message from a CloudEvents producer (binary mode, no tidings headers) is handled
        with the event's id, type and time, and its ``ce-*`` attributes among the headers."""
        if foreign_publish is None:
            pytest.skip("no foreign_publish fixture for this transport")
        topic, handled, received = unique("suite.ce_in"), _Handled(), list[Message]()

        async def handle(message: Message) -> None:
            handled.saw(message.data)
            if PROBE_HEADER not in message.headers:
                received.append(message)

        attributes = {
            "ce-specversion": b"1.0",
            "ce-id": b"order-4711",
            "ce-type": b"tidings.testing.suite_event",
            "ce-source": b"/billing",
            "ce-time": b"2026-01-02T03:04:05Z",
        }
        async with self.running(transport_factory, topic, handled, handler=handle) as _:
            await foreign_publish(topic, b'{"n": 7}', attributes)
            await handled.until(lambda: handled.calls[7] == 1, "the CloudEvent", self.timeout)
        (message,) = received
        assert (message.id, message.type, message.data) == (
            "order-4711",
            "tidings.testing.suite_event",
            SuiteEvent(7),
        )
        assert message.time == datetime.fromisoformat("2026-01-02T03:04:05+00:00")
        assert message.headers["ce-source"] == "/billing"

    async def test_cloudevents_for_other_consumers(
        self, transport_factory: TransportFactory
    ) -> None:
        """A bus with ``cloudevents=`` publishes the required attributes beside its own
        envelope, under the broker binding's names, and tidings consumers are unaffected."""
        topic, handled, received = unique("suite.ce_out"), _Handled(), list[Message]()

        async def handle(message: Message) -> None:
            handled.saw(message.data)
            if PROBE_HEADER not in message.headers:
                received.append(message)

        running = self.running(transport_factory, topic, handled, handler=handle)
        producer = Bus(transport_factory(), cloudevents=CloudEvents(source="/suite"))
        async with running, producer:
            sent = await producer.publish(SuiteEvent(3), topic=topic)
            await handled.until(lambda: handled.calls[3] == 1, "the event", self.timeout)
        (message,) = received
        prefix = "ce_" if "ce_id" in message.headers else "ce-"
        ce = {
            name.removeprefix(prefix): value
            for name, value in message.headers.items()
            if name.startswith(prefix)
        }
        assert ce.pop("time").endswith("Z")
        assert ce == {
            "specversion": "1.0",
            "id": sent.id,
            "type": "tidings.testing.suite_event",
            "source": "/suite",
        }
        assert message.headers["content-type"] == "application/json"
        assert (message.id, message.data) == (sent.id, SuiteEvent(3))
