"""Dead letters kept in a JetStream stream of their own.

Each letter is one message, the :class:`~tidings.dead_letters.DeadLetter` record as JSON, on the
subject ``<dlq prefix>.<letter id>`` of the dead-letter stream (file storage, like the stream it
came from): one letter is the last message on its subject, and listing walks the stream oldest
first with "next message from this sequence on" requests, filtering by topic here (the topic may
be a wildcard pattern, which a subject cannot hold). Removing deletes the message by sequence.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from tidings.dead_letters import PAGE_SIZE, DeadLetter, decode_letter
from tidings.errors import NotFound
from tidings.message import Message

__all__ = ["DEAD_LETTER_TYPE", "NatsDeadLetterStore", "Publish", "Request"]

T = TypeVar("T")

DEAD_LETTER_TYPE = "tidings.dead_letter"
_LETTER_ID = re.compile(r"[A-Za-z0-9_-]+")
_encode = msgspec.json.Encoder().encode

Publish = Callable[[str, Sequence[Message]], Awaitable[None]]
"""Store messages on a subject, returning once JetStream confirmed them."""


class Request(Protocol):
    """Make one JetStream API call, ``doing`` something (for error messages): nats-py's errors
    come out as tidings errors (:class:`~tidings.errors.NotFound` when the server found nothing
    of what was asked)."""

    def __call__(
        self, doing: str, call: Callable[[JetStreamContext], Awaitable[T]], /
    ) -> Awaitable[T]: ...


class NatsDeadLetterStore:
    """The dead-letter stream ``stream`` (subjects ``<prefix>.<letter id>``) of one NATS
    transport, which lends it ``publish`` and ``request``.

    Adding is idempotent per letter id (JetStream de-duplicates by ``Nats-Msg-Id`` within the
    stream's duplicate window). Every method may be called concurrently; each raises
    TransportError or ServiceUnavailable when NATS fails.
    """

    def __init__(self, stream: str, prefix: str, publish: Publish, request: Request) -> None:
        self._stream = stream
        self._prefix = prefix
        self._publish = publish
        self._request = request
        self._name = f"NATS dead letters {stream!r}"

    async def add(self, letter: DeadLetter) -> None:
        """Returns once the letter is stored durably."""
        message = Message.restore(
            DEAD_LETTER_TYPE, _encode(letter), {}, None, letter.id, letter.failed_at
        )
        await self._publish(f"{self._prefix}.{_checked(letter.id)}", [message])

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        """Oldest first, at most ``limit``; only those of ``topic`` when given; from the stream
        sequence after the letter ``after`` when given."""
        letters: builtins.list[DeadLetter] = []
        sequence = 1 if after is None else ((await self._find(after)).seq or 0) + 1
        while len(letters) < limit:
            found = await self._stored(partial(_next_letter, self._stream, self._prefix, sequence))
            if found is None or found.seq is None:
                break
            letter_id = (found.subject or "").rpartition(".")[2]
            letter = decode_letter(letter_id, found.data or b"", self._name)
            if topic is None or letter.topic == topic:
                letters.append(letter)
            sequence = found.seq + 1
        return letters

    async def get(self, letter_id: str) -> DeadLetter:
        """Raises NotFound."""
        found = await self._find(letter_id)
        return decode_letter(letter_id, found.data or b"", self._name)

    async def remove(self, letter_ids: Sequence[str]) -> int:
        """Delete these letters; returns how many existed."""
        removed = 0
        for letter_id in letter_ids:
            try:
                found = await self._find(letter_id)
                deleting = partial(_delete, self._stream, found.seq or 0)
                removed += await self._request(f"deleting from {self._stream}", deleting)
            except NotFound:
                continue
        return removed

    async def _find(self, letter_id: str) -> RawStreamMsg:
        found = None
        if _LETTER_ID.fullmatch(letter_id):
            subject = f"{self._prefix}.{letter_id}"
            found = await self._stored(partial(_last_letter, self._stream, subject))
        if found is None:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return found

    async def _stored(
        self, call: Callable[[JetStreamContext], Awaitable[RawStreamMsg]]
    ) -> RawStreamMsg | None:
        try:
            return await self._request(f"reading {self._stream}", call)
        except NotFound:
            return None


async def _next_letter(
    stream: str, prefix: str, sequence: int, js: JetStreamContext
) -> RawStreamMsg:
    """The first letter at or after ``sequence``."""
    return await js.get_msg(stream, seq=sequence, subject=f"{prefix}.>", next=True)


async def _last_letter(stream: str, subject: str, js: JetStreamContext) -> RawStreamMsg:
    return await js.get_msg(stream, subject=subject)


async def _delete(stream: str, sequence: int, js: JetStreamContext) -> int:
    return int(await js.delete_msg(stream, sequence))


def _checked(letter_id: str) -> str:
    if not _LETTER_ID.fullmatch(letter_id):
        raise ValueError(f"a dead letter id must be letters, digits, - and _: {letter_id!r}")
    return letter_id
