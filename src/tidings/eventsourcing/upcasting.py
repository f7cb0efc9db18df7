"""Event schema versions, upcasters, and the mapping between event objects and stored events.

An event class declares the version of its current shape with a class attribute (1 when absent)::

    @tidings.event("account.opened")
    @dataclass(frozen=True)
    class AccountOpened:
        __schema_version__: ClassVar[int] = 2
        holder: str            # was ``owner`` in version 1

Every stored event carries the schema version it was written with. On read, an older payload goes
through one upcaster per version step, each a plain function from the decoded JSON object of
version ``n`` to the one of version ``n + 1``::

    upcasters = tidings.Upcasters()

    @upcasters.register("account.opened", from_version=1)
    def owner_to_holder(data: dict[str, Any]) -> dict[str, Any]:
        return {"holder": data["owner"]}

Payloads already in the current shape are decoded straight into the class, without a detour
through a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tidings.codec import Codec, JsonCodec, Registry, registry
from tidings.errors import DecodeError, UnknownEventType
from tidings.eventsourcing.store import NewEvent, RecordedEvent

__all__ = ["EventMapper", "Upcaster", "Upcasters", "schema_version_of"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the payload of one schema version into the payload of the next."""


def schema_version_of(cls: type) -> int:
    """The current schema version of an event (or aggregate) class: ``__schema_version__`` or 1."""
    version = getattr(cls, "__schema_version__", 1)
    if not isinstance(version, int) or version < 1:
        raise TypeError(f"{cls.__qualname__}.__schema_version__ must be an int >= 1")
    return version


class Upcasters:
    """Upcasters by event name and the schema version they upgrade from.

    Registering a second function for the same step is a ValueError: the chain must be unambiguous.
    """

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of :meth:`add`."""

        def decorate(upcaster: Upcaster) -> Upcaster:
            self.add(event_name, from_version, upcaster)
            return upcaster

        return decorate

    def add(self, event_name: str, from_version: int, upcaster: Upcaster) -> None:
        """Use ``upcaster`` to turn ``event_name`` payloads of ``from_version`` into the next."""
        key = (event_name, from_version)
        if key in self._steps:
            raise ValueError(f"an upcaster for {event_name!r} from version {from_version} exists")
        self._steps[key] = upcaster

    def upcast(
        self, event_name: str, data: dict[str, Any], from_version: int, to_version: int
    ) -> dict[str, Any]:
        """Apply every step from ``from_version`` up to ``to_version``.

        Raises DecodeError naming the event when a step is missing.
        """
        for version in range(from_version, to_version):
            try:
                step = self._steps[(event_name, version)]
            except KeyError:
                raise DecodeError(
                    event_name, f"no upcaster from schema version {version} to {version + 1}"
                ) from None
            data = step(data)
        return data


class EventMapper:
    """Turns event objects into :class:`NewEvent` and :class:`RecordedEvent` back into objects.

    Names come from ``registry`` (the one ``@tidings.event`` fills by default), bytes from
    ``codec`` (JSON by default), old payloads are upgraded by ``upcasters``.
    """

    def __init__(
        self,
        *,
        codec: Codec | None = None,
        registry: Registry = registry,
        upcasters: Upcasters | None = None,
    ) -> None:
        self.codec: Codec = codec or JsonCodec()
        self.registry = registry
        self.upcasters = upcasters or Upcasters()

    def name_of(self, cls: type) -> str:
        return self.registry.name_of(cls)

    def to_new_event(self, event: object, metadata: Mapping[str, str] | None = None) -> NewEvent:
        """A new event (with a fresh time-ordered id), stamped with its class's schema version."""
        cls = type(event)
        return NewEvent(
            type=self.registry.name_of(cls),
            data=self.codec.encode(event),
            metadata=metadata or {},
            schema_version=schema_version_of(cls),
        )

    def to_event(self, recorded: RecordedEvent) -> Any:
        """The event object of ``recorded``, upcast to its class's current schema version.

        Raises UnknownEventType for a name with no class and DecodeError for a payload that
        does not fit (including one written by a newer schema version than this class knows).
        """
        cls = self.registry.class_of(recorded.type)
        current = schema_version_of(cls)
        stored = recorded.schema_version
        if stored == current:
            return self.codec.decode(recorded.data, into=cls)
        if stored > current:
            raise DecodeError(
                recorded.type,
                f"stored with schema version {stored}, newer than {cls.__qualname__}'s {current}",
            )
        payload: dict[str, Any] = self.codec.decode(recorded.data, into=dict)
        payload = self.upcasters.upcast(recorded.type, payload, stored, current)
        return self.codec.convert(payload, into=cls)

    def current_data(self, recorded: RecordedEvent) -> bytes:
        """The payload in its class's current shape: the stored bytes as they are when already
        current or when no class is registered for the name (nothing to upcast to), otherwise
        upcast and encoded again."""
        try:
            cls = self.registry.class_of(recorded.type)
        except UnknownEventType:
            return recorded.data
        if recorded.schema_version == schema_version_of(cls):
            return recorded.data
        return self.codec.encode(self.to_event(recorded))
