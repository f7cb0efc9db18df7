"""What a bus reports to OpenTelemetry: connected spans after the messaging conventions, and
metrics that add up to what happened."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import tidings
from tidings import Bus, Retry
from tidings.telemetry import configured
from tidings.testing.telemetry import Captured


@tidings.event("telemetry.signed_up")
@dataclass(frozen=True)
class SignedUp:
    user: str


@tidings.event("telemetry.welcomed")
@dataclass(frozen=True)
class Welcomed:
    user: str


FAST = Retry(max_attempts=3, initial_delay=0.0, jitter=False)


@pytest.fixture
def captured() -> Captured:
    return Captured()


def test_without_a_provider_nothing_is_observed() -> None:
    """No global provider is set in the tests: a bus pays nothing."""
    assert configured("tidings") is None


async def test_a_queued_message_is_one_trace_from_publish_to_handler(captured: Captured) -> None:
    bus = Bus(telemetry=captured.telemetry)
    handled = asyncio.Event()
    bus.subscribe(SignedUp, lambda event: handled.set(), group="welcome")
    tracer = captured.telemetry.tracer_provider.get_tracer("app")
    async with bus:
        with tracer.start_as_current_span("signup request") as request:
            message = await bus.publish(SignedUp("ada"), key="ada")
        await handled.wait()
    (send,) = captured.spans("send ")
    (process,) = captured.spans("process ")
    trace_id = request.get_span_context().trace_id
    assert send.context.trace_id == process.context.trace_id == trace_id
    assert send.parent.span_id == request.get_span_context().span_id
    assert process.parent.span_id == send.context.span_id
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert send.name == process.name.replace("process", "send") == "send telemetry.signed_up"
    assert dict(send.attributes) == {
        "messaging.system": "tidings",
        "messaging.destination.name": "telemetry.signed_up",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.message.id": message.id,
        "messaging.message.conversation_id": message.id,
        "tidings.message.key": "ada",
    }
    assert process.attributes["messaging.consumer.group.name"] == "welcome"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["tidings.message.attempt"] == 1
    assert "traceparent" in message.headers


async def test_retries_show_one_span_each_and_the_dead_letter_an_event(
    captured: Captured,
) -> None:
    bus = Bus(telemetry=captured.telemetry)

    def broken(event: SignedUp) -> None:
        raise LookupError("no mailbox")

    bus.subscribe(SignedUp, broken, group="email", retry=FAST)
    async with bus:
        await bus.publish(SignedUp("bob"))
        await bus.drain()
    spans = captured.spans("process ")
    assert [s.attributes["tidings.message.attempt"] for s in spans] == [1, 2, 3]
    assert {s.status.status_code for s in spans} == {StatusCode.ERROR}
    assert {s.attributes["error.type"] for s in spans} == {"LookupError"}
    assert [e.name for e in spans[-1].events if e.name == "dead_lettered"] == ["dead_lettered"]
    assert not any(e.name == "dead_lettered" for s in spans[:-1] for e in s.events)
    assert captured.outcomes("email") == {"retried": 2, "dead_lettered": 1}
    assert captured.total("tidings.dead_letters", error__type="LookupError") == 1


async def test_publish_and_wait_traces_each_attempt_in_place(captured: Captured) -> None:
    bus = Bus(telemetry=captured.telemetry)
    calls = 0

    async def flaky(event: SignedUp) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls < 2:
            raise TimeoutError("slow mail server")

    bus.subscribe(SignedUp, flaky, group="email", retry=FAST)
    bus.subscribe(SignedUp, lambda event: None, group="audit")
    result = await bus.publish_and_wait(SignedUp("cy"))
    assert result.ok
    (send,) = captured.spans("send ")
    processes = captured.spans("process ")
    assert len(processes) == 3  # email twice, audit once
    assert {p.parent.span_id for p in processes} == {send.context.span_id}
    assert captured.outcomes("email") == {"retried": 1, "ok": 1}
    assert captured.outcomes("audit") == {"ok": 1}


async def test_a_handler_that_publishes_continues_the_trace(captured: Captured) -> None:
    bus = Bus(telemetry=captured.telemetry)
    done = asyncio.Event()

    async def welcome(event: SignedUp) -> None:
        await bus.publish(Welcomed(event.user))

    bus.subscribe(SignedUp, welcome)
    bus.subscribe(Welcomed, lambda event: done.set())
    async with bus:
        await bus.publish(SignedUp("di"))
        await done.wait()
    names = [s.name for s in captured.spans()]
    assert sorted(names) == sorted(
        [
            "send telemetry.signed_up",
            "process telemetry.signed_up",
            "send telemetry.welcomed",
            "process telemetry.welcomed",
        ]
    )
    assert len({s.context.trace_id for s in captured.spans()}) == 1


async def test_a_batch_handler_links_every_message(captured: Captured) -> None:
    bus = Bus(telemetry=captured.telemetry)
    got: list[SignedUp] = []
    done = asyncio.Event()

    async def many(events: list[SignedUp]) -> None:
        got.extend(events)
        if len(got) == 3:
            done.set()

    bus.subscribe(SignedUp, many)
    async with bus:
        await bus.publish_many([SignedUp("a"), SignedUp("b"), SignedUp("c")])
        await done.wait()
    (send,) = captured.spans("send ")
    assert send.attributes["messaging.batch.message_count"] == 3
    links = [link for p in captured.spans("process ") for link in p.links]
    assert {link.context.span_id for link in links} == {send.context.span_id}


async def test_emit_traces_inline_handlers(captured: Captured) -> None:
    bus = Bus(telemetry=captured.telemetry)
    seen: list[str] = []
    bus.subscribe(SignedUp, lambda event: seen.append(event.user))
    bus.emit(SignedUp("ed"))
    assert seen == ["ed"]  # still run right here
    (send,) = captured.spans("send ")
    (process,) = captured.spans("process ")
    assert process.parent.span_id == send.context.span_id


async def test_metrics_count_what_happened(captured: Captured) -> None:
    bus = Bus(telemetry=captured.telemetry)
    bus.subscribe(SignedUp, lambda event: None, group="ok")
    async with bus:
        for user in "abcde":
            await bus.publish(SignedUp(user))
        await bus.drain()
        up = captured.metric("tidings.consumer.up")
    assert captured.total("messaging.client.sent.messages") == 5
    assert captured.outcomes("ok") == {"ok": 5}
    assert captured.total("messaging.process.duration") == 5  # a histogram's count
    assert captured.total("tidings.message.latency") == 5
    assert [
        value for attributes, value in up if attributes["messaging.consumer.group.name"] == "ok"
    ] == [1]


async def test_an_undecodable_message_counts_as_such(captured: Captured) -> None:
    bus = Bus(telemetry=captured.telemetry)
    bus.subscribe(SignedUp, lambda event: None, group="strict")
    async with bus:
        await bus.publish(tidings.Message("telemetry.signed_up", {"nope": 1}))
        await bus.drain()
    assert captured.outcomes("strict") == {"undecodable": 1}
