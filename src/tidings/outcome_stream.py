"""``bus.outcomes()``: the final fate of every message this process's consumers handle.

A consumer reports a message once per route, when it is settled for good: :class:`Handled` once
its handler returned and it was acknowledged; :class:`Failed` once its last attempt failed and
it was stored as a dead letter (:class:`Undecodable`, a kind of Failed, for a payload no attempt
could handle: a DecodeError or a MessageTooLarge). When ``aclose`` runs out of time in process,
the messages it keeps as NotHandled dead letters are reported Failed too. Attempts that will be
retried, messages given back (a consumer stopping) and dead letters that could not be written
(the message comes again) are not final and are not reported. A message delivered again after
it was settled (a crash, a lost ack) is handled and reported again: at least once, as delivery.

Every transport feeds the one consume loop (:mod:`tidings.handling`), which reports, so every
transport reports alike. ``publish_and_wait`` returns its handlers' outcomes itself; it, ``emit``
and an ``inline`` bus report nothing here.

A stream holds at most ``maxsize`` outcomes and the consume loop never waits for its reader: when
the reader falls behind, the oldest outcomes are dropped and the reader gets a :class:`Missed`
with their count where they were, before the next outcome (``stream.missed`` totals them). Each
stream gets every outcome its filters match. It ends, after the outcomes it holds, when the bus
closes; ``aclose`` (or leaving ``async with``) ends it at once. The bus holds streams weakly: one
nobody holds any more stops receiving. With no stream open a consumer pays one check per message.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import TYPE_CHECKING, TypedDict, Unpack

import msgspec

from tidings.dead_letters import DeadLetter
from tidings.message import Message
from tidings.topics import matches, validate_pattern

if TYPE_CHECKING:
    from tidings.route import Route

__all__ = [
    "Failed",
    "FinalOutcome",
    "Handled",
    "Missed",
    "OutcomeStream",
    "Outcomes",
    "StreamOptions",
    "Undecodable",
    "failed",
]


# msgspec Structs: a consumer builds one per message while a stream is open, five times faster
# than a frozen dataclass; gc=False like the Message they hold (nothing refers back to them).
class _Settled(msgspec.Struct, frozen=True, gc=False):
    route: str
    """The name of the route whose consumer handled the message (``Route.name``)."""
    group: str
    topic: str
    """The topic the message came on (the concrete one, for a route on a pattern)."""
    message: Message
    """The message as the handler's route received it (``message.id``, ``.type``, ``.key``)."""
    attempts: int
    """Attempts made, the last included (1: the first one settled it)."""
    duration: float
    """Seconds from the start of the last attempt until the message was settled."""


class Handled(_Settled, frozen=True, gc=False):
    """The handler returned and the message was acknowledged."""


class Failed(_Settled, frozen=True, gc=False):
    """The last attempt failed: the message is in the dead-letter store with the reason."""

    error_type: str
    """The error's qualified class name (``builtins.ValueError``), as in the dead letter."""
    error_message: str
    dead_letter_id: str
    """For ``bus.dead_letters.show``, ``replay`` and ``purge``."""


class Undecodable(Failed, frozen=True, gc=False):
    """The payload could not be decoded (or was too large): dead-lettered without a retry."""


class Missed(msgspec.Struct, frozen=True, gc=False):
    """``count`` outcomes were dropped here: the reader fell behind a full stream."""

    count: int


FinalOutcome = Handled | Failed


class StreamOptions(TypedDict, total=False):
    """The options of ``bus.outcomes()``: only the outcomes of ``route`` (a Route or its name),
    ``group`` and ``topic`` (a pattern matches the topics it covers), when given; at most
    ``maxsize`` (1024) held for the reader."""

    route: Route | str | None
    group: str | None
    topic: str | None
    maxsize: int


def failed(
    route: str, message: Message, letter: DeadLetter, duration: float, *, undecodable: bool
) -> Failed:
    """The outcome of ``route``'s ``message``, stored as ``letter``."""
    kind = Undecodable if undecodable else Failed
    return kind(
        route, letter.group, letter.topic, message, letter.attempts, duration,
        letter.error_type, letter.error_message, letter.id,
    )  # fmt: skip


class OutcomeStream:
    """An async iterator of final outcomes (and :class:`Missed` gaps), from ``bus.outcomes()``;
    also an async context manager that closes it. See the module docstring."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_ended",
        "_filtered",
        "_group",
        "_outcomes",
        "_route",
        "_topic",
        "_unreported",
        "_waiters",
        "missed",
    )

    def __init__(
        self,
        outcomes: Outcomes,
        route: str | None,
        group: str | None,
        topic: str | None,
        maxsize: int,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize!r}")
        self._topic = validate_pattern(topic) if topic is not None else None
        self._route = route
        self._group = group
        self._filtered = route is not None or group is not None or topic is not None
        self._outcomes = outcomes
        self._buffer: deque[FinalOutcome] = deque(maxlen=maxsize)
        self._unreported = 0
        self._ended = False
        self._waiters: list[asyncio.Future[None]] = []
        self.missed = 0
        """Outcomes dropped because the reader fell behind, since the stream opened."""

    def offer(self, outcome: FinalOutcome) -> None:
        """Keep ``outcome`` if the filters match, dropping the oldest when full; never waits."""
        if self._ended or (self._filtered and not self._wants(outcome)):
            return
        buffer = self._buffer
        if len(buffer) == buffer.maxlen:
            self.missed += 1
            self._unreported += 1
        buffer.append(outcome)
        if self._waiters:
            self._wake()

    def _wants(self, outcome: FinalOutcome) -> bool:
        return (
            (self._route is None or self._route == outcome.route)
            and (self._group is None or self._group == outcome.group)
            and (self._topic is None or matches(self._topic, outcome.topic))
        )

    def end(self) -> None:
        """No more outcomes will come: the reader gets those held, then the stream ends."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def __aiter__(self) -> OutcomeStream:
        return self

    async def __anext__(self) -> FinalOutcome | Missed:
        while True:
            if self._unreported:  # the dropped ones were older than any still held
                count, self._unreported = self._unreported, 0
                return Missed(count)
            if self._buffer:
                return self._buffer.popleft()
            if self._ended:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def aclose(self) -> None:
        """Stop receiving and drop what is held: the iteration ends. Idempotent."""
        self._outcomes.forget(self)
        self._buffer.clear()
        self._unreported = 0
        self.end()

    async def __aenter__(self) -> OutcomeStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Outcomes:
    """Where one bus's consumers report final outcomes, and the streams open on them.

    ``readers`` is empty when no stream is open: the consumers check it before building an
    outcome, so reporting costs nothing then.
    """

    __slots__ = ("closed", "readers")

    def __init__(self) -> None:
        self.readers: tuple[weakref.ref[OutcomeStream], ...] = ()
        """The open streams, held weakly; replaced, never changed in place."""
        self.closed = False

    def open(self, **options: Unpack[StreamOptions]) -> OutcomeStream:
        """A new stream; raises ValueError for a bad ``topic`` pattern or ``maxsize``."""
        route = options.get("route")
        name = route if route is None or isinstance(route, str) else route.name
        stream = OutcomeStream(
            self, name, options.get("group"), options.get("topic"), options.get("maxsize", 1024)
        )
        if self.closed:
            stream.end()
        else:
            self.readers = (*self.readers, weakref.ref(stream, self._let_go))
        return stream

    def report(self, outcome: FinalOutcome) -> None:
        for reader in self.readers:
            stream = reader()
            if stream is not None:
                stream.offer(outcome)

    def forget(self, stream: OutcomeStream) -> None:
        self.readers = tuple(r for r in self.readers if r() not in (stream, None))

    def _let_go(self, gone: weakref.ref[OutcomeStream]) -> None:
        self.readers = tuple(r for r in self.readers if r is not gone)

    def close(self) -> None:
        """The bus closed: every stream ends after what it holds."""
        self.closed = True
        readers, self.readers = self.readers, ()
        for reader in readers:
            stream = reader()
            if stream is not None:
                stream.end()
