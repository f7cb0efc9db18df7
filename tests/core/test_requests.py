"""``bus.request``: the first reply a handler gives, typed errors when none comes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

import tidings
from tidings import Bus


@tidings.event("quote.requested")
@dataclass(frozen=True)
class QuoteRequested:
    amount: int


@tidings.event("quote.given")
@dataclass(frozen=True)
class Quote:
    amount: int
    fee: int


@pytest.mark.parametrize("inline", [False, True])
async def test_a_request_returns_what_the_handler_returns(inline: bool) -> None:
    bus = Bus(inline=inline)

    @bus.subscribe(QuoteRequested)
    async def quote(request: QuoteRequested) -> Quote:
        await asyncio.sleep(0)
        return Quote(request.amount, request.amount // 100)

    async with bus:
        answers = await asyncio.gather(*(bus.request(QuoteRequested(n * 100)) for n in range(20)))
    assert answers == [Quote(n * 100, n) for n in range(20)]


async def test_a_plain_def_handler_and_a_message_handler_reply_too() -> None:
    bus = Bus()
    bus.subscribe(QuoteRequested, lambda e: None, group="silent")

    @bus.subscribe("quote.requested", group="sync")
    def quote(message: tidings.Message) -> Quote:
        return Quote(message.data.amount, 1)

    async with bus:
        assert await bus.request(QuoteRequested(5)) == Quote(5, 1)


async def test_a_published_event_gets_no_reply_and_a_handler_without_return_type_gives_none() -> (
    None
):
    bus = Bus()
    published: list[tidings.Message] = []
    bus.subscribe("quote.given", published.append, group="watch")

    @bus.subscribe(QuoteRequested)
    async def quote(request: QuoteRequested) -> Quote:
        return Quote(request.amount, 0)

    @bus.subscribe(QuoteRequested, group="unannotated")
    async def unannotated(request):  # type: ignore[no-untyped-def]
        return Quote(request.amount, 99)

    async with bus:
        await bus.publish(QuoteRequested(1))
        await bus.drain()
        assert await bus.request(QuoteRequested(2), timeout=5) == Quote(2, 0)
        await bus.drain()
    assert published == []  # replies go to the inbox only, and never for a plain publish


async def test_no_handler_in_process_raises_no_responder_at_once() -> None:
    async with Bus() as bus:
        with pytest.raises(tidings.NoResponder, match=r"quote\.requested"):
            await bus.request(QuoteRequested(1), timeout=60)


async def test_a_handler_that_does_not_answer_in_time_raises_request_timeout() -> None:
    bus = Bus()
    release = asyncio.Event()

    @bus.subscribe(QuoteRequested)
    async def slow(request: QuoteRequested) -> Quote:
        await release.wait()
        return Quote(request.amount, 0)

    async with bus:
        with pytest.raises(tidings.RequestTimeout, match=r"within 0\.05s") as caught:
            await bus.request(QuoteRequested(1), timeout=0.05)
        release.set()
    assert caught.value.topic == "quote.requested"
    assert isinstance(caught.value, TimeoutError)
