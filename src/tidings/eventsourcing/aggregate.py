"""Event-sourced aggregates: state rebuilt by applying events, changes recorded as new events.

A user's aggregate is a plain subclass: commands check invariants and call :meth:`Aggregate.record`,
:meth:`Aggregate.apply` changes state with ``match`` on the event classes::

    class Account(tidings.Aggregate):
        balance: Decimal = Decimal(0)

        def deposit(self, amount: Decimal) -> None:
            if amount <= 0:
                raise ValueError("amounts must be positive")
            self.record(MoneyDeposited(amount))

        def apply(self, event: object) -> None:
            match event:
                case MoneyDeposited(amount=amount):
                    self.balance += amount

No metaclass and no decorators: :class:`~tidings.Repository` builds an aggregate with ``cls(id)``,
so a subclass that defines ``__init__`` takes the id as its only argument and calls
``super().__init__(id)``.

Snapshots store the aggregate's *annotated* public attributes (``balance: Decimal`` above), decoded
back into their annotated types on load. Bump the class attribute ``__schema_version__`` when those
attributes change shape: snapshots of another schema version are ignored and the aggregate is
rebuilt from its events.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Self

import msgspec

from tidings.codec import Codec

__all__ = ["Aggregate", "restore_state", "state_of"]


class Aggregate:
    """Base class of event-sourced aggregates.

    ``id`` names the aggregate's stream. ``version`` counts every event applied, the ones loaded
    from the store and the ones recorded since (``pending_events``), so after a save it equals the
    stream's version. Not safe for concurrent use by several tasks: load one per unit of work.
    """

    __schema_version__: ClassVar[int] = 1
    """Version of the snapshot shape (the annotated attributes); bump it when they change."""

    id: str
    version: int

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self._pending: list[object] = []

    @classmethod
    def from_events(cls, id: str, events: Iterable[object]) -> Self:
        """The aggregate ``id`` as applying ``events`` in order leaves it, without a store
        (``Rebuild(events)`` in Go): ``version`` counts them and none is pending. Built with
        ``cls(id)``, as :class:`~tidings.Repository` builds it."""
        aggregate = cls(id)
        for event in events:
            aggregate.apply(event)
            aggregate.version += 1
        return aggregate

    def apply(self, event: object) -> None:
        """Change state for one event; called on record and on load. Must not raise for any
        event this aggregate ever recorded: checks belong in the commands, before ``record``."""
        raise NotImplementedError(f"{type(self).__qualname__} must define apply(self, event)")

    def record(self, event: object) -> None:
        """Apply ``event`` and queue it for the next :meth:`Repository.save`."""
        self.apply(event)
        self.version += 1
        self._pending.append(event)

    @property
    def pending_events(self) -> Sequence[object]:
        """Events recorded since the aggregate was loaded or last saved, oldest first."""
        return tuple(self._pending)

    def collect(self) -> list[object]:
        """Remove and return the pending events (the repository calls this after a save)."""
        events, self._pending = self._pending, []
        return events

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(id={self.id!r}, version={self.version})"


_BASE_FIELDS = frozenset(typing.get_type_hints(Aggregate))
_state_types: dict[type[Aggregate], type[msgspec.Struct]] = {}


def _state_type(cls: type[Aggregate]) -> type[msgspec.Struct]:
    """A Struct with one field per annotated public attribute of ``cls``, built once per class."""
    try:
        return _state_types[cls]
    except KeyError:
        pass
    fields = [
        (name, hint)
        for name, hint in typing.get_type_hints(cls).items()
        if name not in _BASE_FIELDS
        and not name.startswith("_")
        and typing.get_origin(hint) is not ClassVar
    ]
    state = _state_types[cls] = msgspec.defstruct(f"{cls.__qualname__}State", fields)
    return state


def state_of(aggregate: Aggregate, codec: Codec) -> bytes:
    """The aggregate's annotated public attributes, encoded for a snapshot.

    Raises TypeError when the aggregate holds a public attribute without an annotation, since a
    snapshot would silently lose it.
    """
    fields = _state_type(type(aggregate)).__struct_fields__
    unknown = sorted(
        name
        for name in vars(aggregate)
        if not name.startswith("_") and name not in fields and name not in _BASE_FIELDS
    )
    if unknown:
        raise TypeError(
            f"{type(aggregate).__qualname__} has attributes without annotations"
            f" ({', '.join(unknown)}); snapshots store annotated attributes only"
        )
    return codec.encode({name: getattr(aggregate, name) for name in fields})


def restore_state(aggregate: Aggregate, data: bytes, codec: Codec) -> None:
    """Set the attributes stored by :func:`state_of`. Raises DecodeError when they do not fit."""
    state: Any = codec.decode(data, into=_state_type(type(aggregate)))
    for name in state.__struct_fields__:
        setattr(aggregate, name, getattr(state, name))
