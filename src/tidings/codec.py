"""Event names and the JSON codec.

Every event class has a stable name: the one given to ``@tidings.event("user.signed_up")`` or, when
none is given, the class name. The :class:`Registry` maps names to classes both ways, so stored and
transported messages never carry import paths.

:class:`JsonCodec` turns frozen dataclasses, msgspec Structs, pydantic models and plain dicts into
JSON and back with msgspec: UUID, aware datetime, Decimal, enums and nested types round-trip
exactly. Bad bytes or a payload that does not fit the type raise :class:`~tidings.DecodeError`
naming the type and the field, whatever the decoder raised (hostile nesting makes msgspec raise
RecursionError): such input fails the same way every time. Nothing is ever unpickled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, overload

import msgspec

from tidings.errors import DecodeError, MessageTooLarge, UnknownEventType
from tidings.message import Malformed, Message

__all__ = [
    "BINARY",
    "Codec",
    "JsonCodec",
    "Registry",
    "encoded",
    "event",
    "pydantic_base",
    "registry",
]

T = TypeVar("T")

BINARY = (bytes, bytearray, memoryview)
"""The types that hold encoded payloads (a tuple: isinstance checks on hot paths)."""
E = TypeVar("E", bound=type)


class Registry:
    """Event names to classes and back. Registering the same class twice is harmless; giving one
    name to two classes is a ``ValueError``."""

    def __init__(self) -> None:
        self._by_name: dict[str, type] = {}
        self._by_class: dict[type, str] = {}

    def register(self, cls: type, name: str | None = None) -> str:
        name = name or cls.__name__
        known = self._by_name.get(name)
        if known is not None and known is not cls and _path(known) != _path(cls):
            # the same class defined again (a reloaded module) may take its name back
            raise ValueError(f"event name {name!r} is already used by {_path(known)}")
        self._by_name[name] = cls
        self._by_class[cls] = name
        return name

    def name_of(self, cls: type) -> str:
        """The event name of ``cls``, registering it under its class name on first use."""
        try:
            return self._by_class[cls]
        except KeyError:
            return self.register(cls)

    def class_of(self, name: str) -> type:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(name) from None

    def names(self) -> list[str]:
        return sorted(self._by_name)


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


registry = Registry()
"""The process-wide registry that ``@tidings.event`` writes to."""


@overload
def event(name: str | None = None) -> Callable[[E], E]: ...
@overload
def event(name: E) -> E: ...
def event(name: str | type | None = None) -> Any:
    """Give an event class its stable name: ``@tidings.event("user.signed_up")``.

    Used bare (``@tidings.event``) the class name is the event name.
    """
    if isinstance(name, type):
        registry.register(name)
        return name

    def decorate(cls: E) -> E:
        registry.register(cls, name)
        return cls

    return decorate


class Codec(Protocol):
    """Turns event objects into bytes and back. Implementations must never unpickle."""

    content_type: str

    def encode(self, data: Any) -> bytes: ...

    def decode(self, raw: bytes | bytearray | memoryview, into: type[T]) -> T: ...

    def convert(self, obj: Any, into: type[T]) -> T:
        """Turn decoded-but-untyped data (a dict from a broker, say) into ``into``. Raises
        DecodeError when it does not fit, and for a :class:`~tidings.Malformed` payload (raise
        ``obj.error(name)``): the consume loop dead-letters only DecodeError at once."""
        ...


_AT_PATH = re.compile(r" - at `([^`]*)`$")


def pydantic_base() -> type | None:
    """pydantic's ``BaseModel``, or None when pydantic is not installed."""
    try:
        from pydantic import BaseModel
    except ImportError:  # pydantic is optional
        return None
    return BaseModel


class JsonCodec:
    """JSON via msgspec; decoders are built once per event type and cached."""

    content_type = "application/json"

    def __init__(self) -> None:
        self._pydantic = pydantic_base()
        self._encoder = msgspec.json.Encoder(enc_hook=self._encode_other)
        self._decoders: dict[type, Callable[[Any], Any]] = {}

    def encode(self, data: Any) -> bytes:
        return self._encoder.encode(data)

    def decode(self, raw: bytes | bytearray | memoryview, into: type[T]) -> T:
        try:
            decode = self._decoders[into]
        except KeyError:
            decode = self._decoders[into] = self._decoder_for(into)
        try:
            return decode(raw)  # type: ignore[no-any-return]
        except Exception as exc:  # hostile input may raise anything, RecursionError included
            raise self._decode_error(into, exc) from exc

    def convert(self, obj: Any, into: type[T]) -> T:
        """``obj`` as ``into``; a :class:`~tidings.Malformed` payload raises its DecodeError."""
        if type(obj) is Malformed:
            raise obj.error(_name(into))
        if isinstance(obj, into):
            return obj
        if isinstance(obj, BINARY):
            return self.decode(obj, into)
        try:
            if self._pydantic is not None and issubclass(into, self._pydantic):
                return into.model_validate(obj)  # type: ignore[attr-defined, no-any-return]
            return msgspec.convert(obj, into, strict=False)
        except Exception as exc:  # as in decode: any failure on this input is for good
            raise self._decode_error(into, exc) from exc

    def _decoder_for(self, into: type) -> Callable[[Any], Any]:
        pydantic = self._pydantic
        if pydantic is not None and isinstance(into, type) and issubclass(into, pydantic):
            return into.model_validate_json  # type: ignore[attr-defined, no-any-return]
        return msgspec.json.Decoder(into).decode

    def _encode_other(self, obj: Any) -> Any:
        if self._pydantic is not None and isinstance(obj, self._pydantic):
            return obj.model_dump(mode="json")  # type: ignore[attr-defined]
        raise TypeError(f"cannot encode objects of type {type(obj).__qualname__}")

    @staticmethod
    def _decode_error(into: type, exc: Exception) -> DecodeError:
        name = _name(into)
        errors = getattr(exc, "errors", None)
        if callable(errors):  # pydantic.ValidationError
            first = errors()[0]
            path = "$" + "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
            )
            return DecodeError(name, str(first["msg"]), path)
        message = str(exc)
        found = _AT_PATH.search(message)
        if found:
            return DecodeError(name, message[: found.start()], found.group(1))
        return DecodeError(name, message)


def encoded(message: Message, codec: Codec, limit: int | None) -> Message:
    """The message as a broker carries it: its data encoded (bytes pass as they are). Raises
    MessageTooLarge for a payload of more than ``limit`` bytes."""
    if not isinstance(message.data, bytes):
        message = message.replace(data=codec.encode(message.data))
    if limit is not None and len(message.data) > limit:
        raise MessageTooLarge(len(message.data), limit)
    return message


def _name(into: type) -> str:
    return getattr(into, "__qualname__", repr(into))
