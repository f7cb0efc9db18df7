"""Projections: read models kept up to date from the store's global log, with a durable checkpoint.

A projection has a name (its checkpoint's key) and one handler per event type::

    balances = tidings.Projection("balances", transactional=True)

    @balances.on(MoneyDeposited)
    def deposited(event: MoneyDeposited, ctx: tidings.ProjectionContext) -> None:
        ctx.connection.execute("UPDATE balance SET amount = amount + ? WHERE id = ?", ...)

    await balances.run(store)        # catch up from the checkpoint, then follow new events

Delivery
    Events reach handlers in global position order, in batches of at most ``batch_size``.
    With ``transactional=True`` the handlers of a batch and the new checkpoint run in one
    :meth:`EventStore.transaction`; handlers write their rows through ``ctx.connection`` (the
    store's own connection) and the rows and the checkpoint commit together: every event takes
    effect exactly once. Otherwise the checkpoint is written after the batch's handlers returned:
    after a crash the unfinished batch is handled again (at-least-once), so such handlers must be
    idempotent.
Errors
    A handler's exception rolls the batch back (transactional) or leaves the checkpoint before the
    batch, and propagates out of ``run``/``catch_up``/``rebuild``; nothing is skipped.
Concurrency
    Run one instance of a projection at a time: two runners of the same name would both handle
    every event. Stop the runner before ``rebuild``.
Tracing
    When the store traces, each event a handler gets is handled in a span ``project <name>``, a
    child of the span the event was appended in (:mod:`tidings.telemetry.store`).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tidings.codec import Codec, Registry, registry
from tidings.eventsourcing.store import EventStore, RecordedEvent
from tidings.eventsourcing.subscription import subscribe
from tidings.eventsourcing.upcasting import EventMapper, Upcasters
from tidings.telemetry.store import StoreObserver

__all__ = [
    "Progress",
    "Projection",
    "ProjectionContext",
    "ProjectionStatus",
    "read_batches",
]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class ProjectionContext:
    """What a handler gets beside the event: the stored record (stream, version, position,
    metadata) and, for transactional projections, the transaction's connection (else ``None``)."""

    recorded: RecordedEvent
    connection: Any


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """Where a projection is: its checkpoint ``position`` against the store's ``head``."""

    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        """Events (positions) the projection has yet to handle."""
        return max(self.head - self.position, 0)


ProjectionHandler = Callable[[E, ProjectionContext], Awaitable[None] | None]
Reset = Callable[[Any], Awaitable[None] | None]
Progress = Callable[[int, int], None]
"""Called with (position handled so far, head position) after every batch."""


async def read_batches(
    store: EventStore, *, after: int, size: int, until: int | None = None, follow: bool = False
) -> AsyncIterator[list[RecordedEvent]]:
    """Batches of the global log after ``after``, in position order, none empty.

    Pages of ``size`` events are read with ``read_all`` until one comes back short (or ``until``
    is reached), so a consumer that is behind catches up in large batches. Without ``follow`` the
    batches end there; with it, :meth:`EventStore.subscribe` waits for the next append, which
    comes as a batch of one, and paging resumes after it. Ends when the store closes.
    """
    while True:
        while until is None or after < until:
            batch = [recorded async for recorded in store.read_all(after=after, limit=size)]
            if batch:
                after = batch[-1].position
                yield batch
            if len(batch) < size:
                break
        if not follow:
            return
        recorded = await _next_live(store, after)
        if recorded is None:  # the store closed
            return
        after = recorded.position
        yield [recorded]


async def _next_live(store: EventStore, after: int) -> RecordedEvent | None:
    """The first event after ``after``, waited for by the store's subscription; None once the
    store closed."""
    live = subscribe(store, after=after)
    try:
        return await anext(live, None)
    finally:
        if isinstance(live, AsyncGenerator):  # close it now rather than when it is collected
            await live.aclose()


async def _call(function: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    result = function(*args)
    if inspect.isawaitable(result):
        await result


class Projection:
    """A named read model: handlers per event type, a checkpoint, catch-up and rebuild.

    Handlers are ``def`` or ``async def`` taking ``(event, ctx)``; events without a handler are
    skipped (and not decoded). See the module docstring for the delivery guarantees.
    """

    def __init__(
        self,
        name: str,
        *,
        transactional: bool = False,
        batch_size: int = 500,
        codec: Codec | None = None,
        registry: Registry = registry,
        upcasters: Upcasters | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.name = name
        self.transactional = transactional
        self.batch_size = batch_size
        self._events = EventMapper(codec=codec, registry=registry, upcasters=upcasters)
        self._handlers: dict[str, ProjectionHandler[Any]] = {}
        self._reset: Reset | None = None

    def on(self, event_type: type[E]) -> Callable[[ProjectionHandler[E]], ProjectionHandler[E]]:
        """Decorator: handle events of ``event_type`` (one handler per type)."""
        name = self._events.name_of(event_type)

        def decorate(handler: ProjectionHandler[E]) -> ProjectionHandler[E]:
            if name in self._handlers:
                raise ValueError(f"projection {self.name!r} already handles {name!r}")
            self._handlers[name] = handler
            return handler

        return decorate

    def reset(self, function: Reset) -> Reset:
        """Decorator: the function that empties the read model before :meth:`rebuild`.

        It gets the transaction's connection (transactional projections) or ``None``.
        """
        self._reset = function
        return function

    async def status(self, store: EventStore) -> ProjectionStatus:
        position = await store.get_checkpoint(self.name)
        return ProjectionStatus(self.name, position, await store.head_position())

    async def run(self, store: EventStore) -> None:
        """Handle events from the checkpoint on, then follow new ones until cancelled (or the
        store closes)."""
        after = await store.get_checkpoint(self.name)
        async for batch in read_batches(store, after=after, size=self.batch_size, follow=True):
            await self._handle(store, batch)

    async def catch_up(self, store: EventStore, *, progress: Progress | None = None) -> int:
        """Handle events from the checkpoint up to the head as of the call; return the position."""
        position = await store.get_checkpoint(self.name)
        head = await store.head_position()
        if progress is not None:
            progress(position, head)
        async for batch in read_batches(store, after=position, size=self.batch_size, until=head):
            await self._handle(store, batch)
            position = batch[-1].position
            if progress is not None:
                progress(position, max(head, position))
        return position

    async def rebuild(self, store: EventStore, *, progress: Progress | None = None) -> int:
        """Run the reset function and move the checkpoint to 0 (together, when transactional),
        then handle the whole log again; return the position reached."""
        if self.transactional:
            async with store.transaction() as tx:
                if self._reset is not None:
                    await _call(self._reset, tx.connection)
                await tx.set_checkpoint(self.name, 0)
        else:
            if self._reset is not None:
                await _call(self._reset, None)
            await store.set_checkpoint(self.name, 0)
        return await self.catch_up(store, progress=progress)

    async def _handle(self, store: EventStore, batch: Sequence[RecordedEvent]) -> None:
        if self.transactional:
            async with store.transaction() as tx:
                await self._dispatch(batch, tx.connection, store.observer)
                await tx.set_checkpoint(self.name, batch[-1].position)
        else:
            await self._dispatch(batch, None, store.observer)
            await store.set_checkpoint(self.name, batch[-1].position)

    async def _dispatch(
        self, batch: Sequence[RecordedEvent], connection: Any, observer: StoreObserver | None
    ) -> None:
        handlers = self._handlers
        to_event = self._events.to_event
        for recorded in batch:
            handler = handlers.get(recorded.type)
            if handler is None:
                continue
            if observer is None:
                await _call(handler, to_event(recorded), ProjectionContext(recorded, connection))
                continue
            with observer.projecting(self.name, recorded):  # decoding included: it can fail
                await _call(handler, to_event(recorded), ProjectionContext(recorded, connection))
