"""Dead letters: messages that failed their last attempt, kept with the reason.

A :class:`DeadLetterStore` is where a transport keeps them (a table, a stream, a topic on the same
broker). :class:`DeadLetters` is what users hold (``bus.dead_letters``): list, show, replay, purge.
Replaying publishes the message again to its original topic, addressed to the group that failed it
(header ``tidings-replay-group``), so groups that handled it the first time do not see it twice.
"""

from __future__ import annotations

import builtins
import logging
import traceback
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from tidings.clock import Clock, SystemClock
from tidings.codec import BINARY, Codec
from tidings.errors import CorruptRecord, NotFound
from tidings.message import Malformed, Message, new_id

__all__ = [
    "DEFAULT_MAX_LETTERS",
    "PAGE_SIZE",
    "REPLAY_GROUP_HEADER",
    "UNREADABLE",
    "DeadLetter",
    "DeadLetterStore",
    "DeadLetters",
    "MemoryDeadLetterStore",
    "dead_letter_from",
    "decode_letter",
    "page_of",
    "payload_bytes",
    "store_failure",
    "unreadable_letter",
]

_log = logging.getLogger("tidings.dead_letters")

REPLAY_GROUP_HEADER = "tidings-replay-group"
"""A replayed message carries the group it is meant for; other groups acknowledge it unhandled."""

UNREADABLE = f"{CorruptRecord.__module__}.{CorruptRecord.__qualname__}"
"""``error_type`` of the stand-in a store lists for a stored letter it cannot read back."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A failed message and why it failed. ``data`` is the encoded payload."""

    id: str
    message_id: str
    topic: str
    type: str
    group: str
    data: bytes
    headers: dict[str, str]
    key: str | None
    error_type: str
    error_message: str
    traceback: str
    attempts: int
    failed_at: float
    published_at: float

    def to_message(self) -> Message:
        """The original message, addressed to the group that failed it."""
        headers = {**self.headers, REPLAY_GROUP_HEADER: self.group}
        return Message.restore(
            self.type, self.data, headers, self.key, self.message_id, self.published_at
        )


def dead_letter_from(
    message: Message,
    *,
    topic: str,
    group: str,
    data: bytes,
    error: BaseException,
    attempts: int,
    failed_at: float,
) -> DeadLetter:
    """Build the record for ``message`` that failed with ``error`` after ``attempts`` tries."""
    summary = traceback.format_exception(type(error), error, error.__traceback__, limit=-5)
    return DeadLetter(
        id=new_id(),
        message_id=message.id,
        topic=topic,
        type=message.type,
        group=group,
        data=data,
        headers={k: v for k, v in message.headers.items() if k != REPLAY_GROUP_HEADER},
        key=message.key,
        error_type=f"{type(error).__module__}.{type(error).__qualname__}",
        error_message=str(error),
        traceback="".join(summary)[-4000:],
        attempts=attempts,
        failed_at=failed_at,
        published_at=message.timestamp,
    )


def unreadable_letter(letter_id: str, error: CorruptRecord) -> DeadLetter:
    """The stand-in for a stored letter that cannot be read back: its id, and ``error`` as the
    reason (``error_type`` is :data:`UNREADABLE`).

    Stores list it in the letter's place, so one damaged record neither hides the others nor
    goes unseen; it can be shown and purged by id, and is never replayed.
    """
    _log.warning("%s", error)
    return DeadLetter(
        id=letter_id, message_id="", topic="", type="", group="", data=b"", headers={}, key=None,
        error_type=UNREADABLE, error_message=str(error), traceback="", attempts=0,
        failed_at=0.0, published_at=0.0,
    )  # fmt: skip


_decode_json = msgspec.json.Decoder(DeadLetter).decode


def decode_letter(letter_id: str, data: bytes, store: str) -> DeadLetter:
    """The letter a broker store kept as JSON under ``letter_id``, or its
    :func:`unreadable_letter` stand-in when ``data`` is not a dead letter."""
    try:
        return _decode_json(data)
    except msgspec.DecodeError as exc:
        error = CorruptRecord(store, f"dead letter {letter_id!r}", f"{exc}")
        return unreadable_letter(letter_id, error)


def payload_bytes(data: Any, codec: Codec) -> bytes:
    """``data`` as stored bytes: as it is when already bytes, the raw bytes of a
    :class:`~tidings.Malformed` payload, else encoded; an object the codec cannot encode is kept
    as its JSON-encoded repr, so the reason survives even then."""
    if isinstance(data, BINARY):
        return bytes(data)
    if type(data) is Malformed:
        return data.raw
    try:
        return codec.encode(data)
    except (TypeError, ValueError):
        return codec.encode(repr(data))


async def store_failure(
    store: DeadLetterStore,
    message: Message,
    *,
    topic: str,
    group: str,
    codec: Codec,
    error: BaseException,
    attempts: int,
    failed_at: float,
) -> DeadLetter:
    """Record ``message``'s failure in ``store`` and log it; returns the stored letter."""
    letter = dead_letter_from(
        message,
        topic=topic,
        group=group,
        data=payload_bytes(message.data, codec),
        error=error,
        attempts=attempts,
        failed_at=failed_at,
    )
    await store.add(letter)
    _log.warning(
        "%s: %s %s dead-lettered after %d attempt(s): %s: %s",
        group,
        message.type,
        message.id,
        attempts,
        type(error).__name__,
        error,
    )
    return letter


PAGE_SIZE = 100
"""How many letters ``list`` returns unless given ``limit``: a page, not the whole store (use
:meth:`DeadLetters.all` to walk every letter)."""


def page_of(
    letters: Iterable[DeadLetter], *, topic: str | None, limit: int, after: str | None
) -> builtins.list[DeadLetter]:
    """The page :meth:`DeadLetterStore.list` returns, taken from ``letters`` in store order: for
    stores that walk their letters in order anyway. Raises NotFound when ``after`` is not
    among them."""
    found = iter(letters)
    if after is not None and not any(letter.id == after for letter in found):
        raise NotFound(f"no dead letter with id {after!r}")
    chosen = (letter for letter in found if topic is None or letter.topic == topic)
    return [letter for _, letter in zip(range(limit), chosen, strict=False)]


class DeadLetterStore(Protocol):
    """Where a transport keeps dead letters. Every method is safe to call concurrently."""

    async def add(self, letter: DeadLetter) -> None:
        """Store durably (for persistent transports) before returning."""

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> list[DeadLetter]:
        """Up to ``limit`` letters (of ``topic`` when given), oldest first; with ``after``, only
        those stored after the letter with that id (the last of the previous page), whatever
        its topic. Raises NotFound when no letter has the id ``after``."""
        ...

    async def get(self, letter_id: str) -> DeadLetter:
        """Raises NotFound."""
        ...

    async def remove(self, letter_ids: Sequence[str]) -> int:
        """Remove these letters; returns how many existed."""
        ...


DEFAULT_MAX_LETTERS = 10_000
"""How many dead letters a :class:`MemoryDeadLetterStore` keeps unless told otherwise."""


class MemoryDeadLetterStore:
    """Dead letters kept in memory, for the in-process bus and tests: at most ``max_letters``.

    When full, adding a letter evicts the oldest one; ``evicted`` counts the letters evicted
    since the store was made. Evictions are logged at WARNING, at most once a second (by
    ``clock``), with how many were evicted since the last such warning. Pass a store of your
    own bound as ``Bus(dead_letters=MemoryDeadLetterStore(max_letters=...))``.
    """

    def __init__(self, max_letters: int = DEFAULT_MAX_LETTERS, clock: Clock | None = None) -> None:
        if max_letters < 1:
            raise ValueError(f"max_letters must be at least 1, not {max_letters}")
        self.max_letters = max_letters
        self.evicted = 0
        self._clock = clock or SystemClock()
        # OrderedDict: evicting the oldest of a plain dict scans the slots its evictions emptied
        self._letters: OrderedDict[str, DeadLetter] = OrderedDict()
        self._unlogged = 0
        self._logged_at: float | None = None

    async def add(self, letter: DeadLetter) -> None:
        self._letters[letter.id] = letter
        if len(self._letters) > self.max_letters:
            self._letters.popitem(last=False)
            self.evicted += 1
            self._unlogged += 1
            self._warn_evicted()

    def _warn_evicted(self) -> None:
        now = self._clock.now()
        # abs(): a clock set back must not silence the warnings until it catches up
        if self._logged_at is not None and abs(now - self._logged_at) < _WARN_INTERVAL:
            return
        _log.warning(
            "the in-memory dead-letter store is full (max_letters=%d): evicted %d oldest "
            "letter(s) since the last warning, %d in all",
            self.max_letters,
            self._unlogged,
            self.evicted,
        )
        self._logged_at = now
        self._unlogged = 0

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        return page_of(self._letters.values(), topic=topic, limit=limit, after=after)

    async def get(self, letter_id: str) -> DeadLetter:
        try:
            return self._letters[letter_id]
        except KeyError:
            raise NotFound(f"no dead letter with id {letter_id!r}") from None

    async def remove(self, letter_ids: Sequence[str]) -> int:
        return sum(self._letters.pop(i, None) is not None for i in letter_ids)


_WARN_INTERVAL = 1.0  # seconds between eviction warnings: a flood of failures logs a few lines

Republish = Callable[[str, Message], Awaitable[None]]


class DeadLetters:
    """The dead letters of one bus: list, show, replay, purge."""

    def __init__(self, store: DeadLetterStore, republish: Republish) -> None:
        self.store = store
        self._republish = republish

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        """One page: up to ``limit`` letters (100 by default; of ``topic`` when given), oldest
        first. For the next page pass ``after=`` the id of the last letter of this one; a page
        shorter than ``limit`` is the last. Raises NotFound when the letter ``after`` is gone."""
        return await self.store.list(topic=topic, limit=limit, after=after)

    async def all(
        self, *, topic: str | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[DeadLetter]:
        """Every letter (of ``topic`` when given), oldest first, read ``page_size`` at a time.

        Each page is read before the previous one is yielded in full, so the caller may replay
        or purge the letters it was given while iterating. Letters added meanwhile are yielded
        if they come after the page being read.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        page = await self.store.list(topic=topic, limit=page_size)
        while page:
            following: builtins.list[DeadLetter] = []
            if len(page) == page_size:
                following = await self.store.list(topic=topic, limit=page_size, after=page[-1].id)
            for letter in page:
                yield letter
            page = following

    async def show(self, letter_id: str) -> DeadLetter:
        return await self.store.get(letter_id)

    async def replay(self, letter_ids: Iterable[str] | None = None) -> int:
        """Publish these letters (all when None) again and remove them; returns how many.

        Each letter is removed only after its publish returned, so a crash replays it again
        rather than losing it. Letters the store cannot read back (see :func:`unreadable_letter`)
        stay where they are: skipped when replaying all, CorruptRecord when asked for by id.
        """
        letters = await self._chosen(letter_ids)
        unreadable = [letter.id for letter in letters if letter.error_type == UNREADABLE]
        if unreadable and letter_ids is not None:
            reason = "it cannot be read back, so it cannot be replayed (purge it by id)"
            raise CorruptRecord("the dead-letter store", f"dead letter {unreadable[0]!r}", reason)
        letters = [letter for letter in letters if letter.error_type != UNREADABLE]
        for letter in letters:
            await self._republish(letter.topic, letter.to_message())
            await self.store.remove([letter.id])
        return len(letters)

    async def purge(self, letter_ids: Iterable[str] | None = None) -> int:
        """Delete these letters (all when None) for good; returns how many."""
        letters = await self._chosen(letter_ids)
        return await self.store.remove([letter.id for letter in letters])

    async def _chosen(self, letter_ids: Iterable[str] | None) -> builtins.list[DeadLetter]:
        if letter_ids is None:
            return [letter async for letter in self.all()]
        return [await self.store.get(i) for i in letter_ids]
