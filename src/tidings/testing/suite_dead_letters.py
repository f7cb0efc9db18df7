"""Conformance cases for a transport's dead-letter store (part of TransportSuite)."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest

from tidings.dead_letters import DeadLetter, DeadLetters, DeadLetterStore, dead_letter_from
from tidings.errors import NotFound
from tidings.message import Message
from tidings.testing.receiver import TransportFactory, opened, unique

__all__ = ["DeadLetterCases"]


def _letter(topic: str, n: int) -> DeadLetter:
    try:
        raise ValueError(f"failure {n}")
    except ValueError as error:
        message = Message("suite.item", f'{{"n":{n}}}'.encode(), {"n": str(n)}, f"key-{n}")
        return dead_letter_from(
            message,
            topic=topic,
            group="suite-group",
            data=message.data,
            error=error,
            attempts=n,
            failed_at=time.time(),
        )


class DeadLetterCases:
    timeout: ClassVar[float] = 30.0

    async def test_dead_letter_store(self, transport_factory: TransportFactory) -> None:
        """add, list (oldest first, by topic, limited), get, remove; NotFound for unknown ids;
        kept across a reopen where the transport is persistent."""
        first, second = unique("suite.letters"), unique("suite.letters")
        letters = [_letter(first, 1), _letter(second, 2), _letter(first, 3)]
        ids = [letter.id for letter in letters]
        async with opened(transport_factory) as transport:
            store = transport.dead_letters()
            for letter in letters:
                await store.add(letter)
            assert await store.list(topic=first) == [letters[0], letters[2]]
            assert await store.list(topic=first, limit=1) == [letters[0]]
            everything = await store.list(limit=1_000_000)
            assert [letter.id for letter in everything if letter.id in ids] == ids
            assert await store.get(ids[1]) == letters[1]
            with pytest.raises(NotFound):
                await store.get(unique("missing"))
            if not transport.features.persistent:
                await _remove(store, letters, first)
                return
        async with opened(transport_factory) as transport:
            store = transport.dead_letters()
            assert await store.list(topic=second) == [letters[1]], "kept across a reopen"
            await _remove(store, letters, first)

    async def test_dead_letters_come_in_pages(self, transport_factory: TransportFactory) -> None:
        """``list`` returns 100 letters unless given ``limit``; ``after=`` the last id of a page
        gives the next one, so ``DeadLetters.all`` walks past the first 100; an ``after`` that
        names no letter is NotFound."""
        topic = unique("suite.pages")
        letters = [_letter(topic, n) for n in range(150)]
        async with opened(transport_factory) as transport:
            store = transport.dead_letters()
            for letter in letters:
                await store.add(letter)
            first = await store.list(topic=topic)
            assert first == letters[:100]
            assert await store.list(topic=topic, after=first[-1].id) == letters[100:]
            assert await store.list(topic=topic, limit=3, after=letters[146].id) == letters[147:]
            with pytest.raises(NotFound):
                await store.list(topic=topic, after=unique("missing"))
            dead_letters = DeadLetters(store, _no_republish)
            assert [d async for d in dead_letters.all(topic=topic, page_size=64)] == letters
            assert await store.remove([letter.id for letter in letters]) == 150


async def _no_republish(topic: str, message: Message) -> None:
    raise AssertionError("nothing is replayed here")


async def _remove(store: DeadLetterStore, letters: list[DeadLetter], first: str) -> None:
    assert await store.remove([letters[0].id, unique("missing")]) == 1
    assert await store.list(topic=first) == [letters[2]]
    assert await store.remove([letters[1].id, letters[2].id]) == 2
    assert await store.list(topic=first) == []
