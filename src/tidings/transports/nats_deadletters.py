"""Dead letters kept in a JetStream stream of their own.

Each letter is one message, the :class:`~tidings.deadletters.DeadLetter` record as JSON, on the
subject ``<dlq prefix>.<letter id>.<original topic>`` of the dead-letter stream (file storage,
like the stream it came from). The subject makes every question one filter: all letters are
``<prefix>.>``, one topic's ``<prefix>.*.<topic>``, one letter ``<prefix>.<id>.>``. Listing walks
the stream oldest first with "next message matching the filter" requests; removing deletes the
message by its stream sequence.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from tidings.deadletters import DeadLetter
from tidings.errors import NotFound
from tidings.message import Message

if TYPE_CHECKING:
    from tidings.transports.nats import NatsTransport

__all__ = ["DEAD_LETTER_TYPE", "NatsDeadLetterStore"]

DEAD_LETTER_TYPE = "tidings.dead_letter"
_LETTER_ID = re.compile(r"[A-Za-z0-9_-]+")
_decode = msgspec.json.Decoder(DeadLetter).decode
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

    async def add(self, letter: DeadLetter) -> None:
        """Returns once the letter is stored durably."""
        message = Message.restore(
            DEAD_LETTER_TYPE, _encode(letter), {}, None, letter.id, letter.failed_at
        )
        subject = f"{self._prefix}.{letter.id}.{letter.topic}"
        await self._transport.publish_subject(subject, [message])

    async def list(
        self, *, topic: str | None = None, limit: int = 100
    ) -> builtins.list[DeadLetter]:
        """Oldest first, at most ``limit``; only those of ``topic`` when given."""
        wanted = f"{self._prefix}.*.{topic}" if topic else f"{self._prefix}.>"
        letters: builtins.list[DeadLetter] = []
        sequence = 1
        while len(letters) < limit:
            found = await self._transport.next_stored(self._stream, wanted, sequence)
            if found is None:
                break
            sequence, data = found
            letters.append(_decode(data))
            sequence += 1
        return letters

    async def get(self, letter_id: str) -> DeadLetter:
        """Raises NotFound."""
        _, data = await self._find(letter_id)
        return _decode(data)

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
            found = await self._transport.next_stored(
                self._stream, f"{self._prefix}.{letter_id}.>", 1
            )
        if found is None:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return found
