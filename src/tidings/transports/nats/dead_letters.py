"""Dead letters kept in a JetStream stream of their own.

Each letter is one message, the :class:`~tidings.deadletters.DeadLetter` record as JSON, on the
subject ``<dlq prefix>.<letter id>`` of the dead-letter stream (file storage, like the stream it
came from): one letter is the last message on its subject, and listing walks the stream oldest
first with "next message from this sequence on" requests, filtering by topic here (the topic may
be a wildcard pattern, which a subject cannot hold). Removing deletes the message by sequence.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from tidings.deadletters import DeadLetter, decode_letter
from tidings.errors import NotFound
from tidings.message import Message

if TYPE_CHECKING:
    from tidings.transports.nats import NatsTransport

__all__ = ["DEAD_LETTER_TYPE", "NatsDeadLetterStore"]

DEAD_LETTER_TYPE = "tidings.dead_letter"
_LETTER_ID = re.compile(r"[A-Za-z0-9_-]+")
_encode = msgspec.json.Encoder().encode


class NatsDeadLetterStore:
    """The dead-letter stream of one :class:`~tidings.transports.nats.NatsTransport`.

    Adding is idempotent per letter id (JetStream de-duplicates by ``Nats-Msg-Id`` within the
    stream's duplicate window). Every method may be called concurrently; each raises
    TransportError or ServiceUnavailable when NATS fails.
    """

    def __init__(self, transport: NatsTransport) -> None:
        self._transport = transport
        self._stream = transport.options.dead_letter_stream
        self._prefix = transport.options.dead_letter_prefix
        self._name = f"NATS dead letters {self._stream!r}"

    async def add(self, letter: DeadLetter) -> None:
        """Returns once the letter is stored durably."""
        message = Message.restore(
            DEAD_LETTER_TYPE, _encode(letter), {}, None, letter.id, letter.failed_at
        )
        subject = f"{self._prefix}.{_checked(letter.id)}"
        await self._transport.publish_subject(subject, [message])

    async def list(
        self, *, topic: str | None = None, limit: int = 100
    ) -> builtins.list[DeadLetter]:
        """Oldest first, at most ``limit``; only those of ``topic`` when given."""
        letters: builtins.list[DeadLetter] = []
        sequence = 1
        while len(letters) < limit:
            found = await self._transport.next_stored(self._stream, f"{self._prefix}.>", sequence)
            if found is None:
                break
            sequence, subject, data = found
            letter = decode_letter(subject.rpartition(".")[2], data, self._name)
            if topic is None or letter.topic == topic:
                letters.append(letter)
            sequence += 1
        return letters

    async def get(self, letter_id: str) -> DeadLetter:
        """Raises NotFound."""
        _, data = await self._find(letter_id)
        return decode_letter(letter_id, data, self._name)

    async def remove(self, letter_ids: Sequence[str]) -> int:
        """Delete these letters; returns how many existed."""
        removed = 0
        for letter_id in letter_ids:
            try:
                sequence, _ = await self._find(letter_id)
            except NotFound:
                continue
            removed += await self._transport.delete_stored(self._stream, sequence)
        return removed

    async def _find(self, letter_id: str) -> tuple[int, bytes]:
        found = None
        if _LETTER_ID.fullmatch(letter_id):
            found = await self._transport.last_stored(self._stream, f"{self._prefix}.{letter_id}")
        if found is None:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        sequence, _, data = found
        return sequence, data


def _checked(letter_id: str) -> str:
    if not _LETTER_ID.fullmatch(letter_id):
        raise ValueError(f"a dead letter id must be letters, digits, - and _: {letter_id!r}")
    return letter_id
