"""URL query parameters as fields of a transport's options dataclass.

Every broker keeps its settings in one frozen dataclass whose ``from_url`` reads the scheme, hosts
and credentials itself and hands the query to :func:`query_options`. That parses each value by
its field's annotated type, so every transport spells its options the same way: ``int`` and
``float`` as numbers, ``bool`` as ``true``/``false``/``1``/``0``, a ``Literal`` as one of its
values, anything else as the string given; ``X | None`` is parsed as ``X``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import fields
from types import NoneType
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import parse_qsl

from tidings.urls import redact

__all__ = ["query_options", "redacted_repr"]


def query_options(
    options: type[Any], query: str, *, scheme: str, exclude: Collection[str] = ()
) -> dict[str, object]:
    """The fields of the dataclass ``options`` that ``query`` sets, each parsed by its type.

    Fields in ``exclude`` (those taken from other parts of the URL) cannot be set. Raises
    ValueError for a malformed query, an unknown name (listing the known ones) or a value its
    field's type does not accept; the messages name the ``scheme`` (``unknown nats option …``).
    """
    hints = get_type_hints(options)
    kinds = {f.name: hints[f.name] for f in fields(options) if f.name not in exclude}
    values: dict[str, object] = {}
    for name, value in parse_qsl(query, strict_parsing=bool(query)):
        kind = kinds.get(name)
        if kind is None:
            known = ", ".join(sorted(kinds))
            raise ValueError(f"unknown {scheme} option {name!r}; known: {known}")
        values[name] = _parse(scheme, name, kind, value)
    return values


def _parse(scheme: str, name: str, kind: Any, value: str) -> object:
    args = get_args(kind)
    if get_origin(kind) is Literal:
        if value not in args:
            choices = " or ".join(repr(choice) for choice in args)
            raise ValueError(f"{name} must be {choices}, not {value!r}")
        return value
    if NoneType in args:
        (kind,) = (arg for arg in args if arg is not NoneType)
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{scheme} option {name} must be true or false, not {value!r}")
        return value.lower() in ("true", "1")
    if kind is int or kind is float:
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"{scheme} option {name} cannot be {value!r}") from None
    return value


def redacted_repr(options: Any) -> str:
    """``Options(field=value, …)`` of the dataclass ``options``, leaving out fields declared with
    ``repr=False`` and showing every URL (or tuple of URLs) through :func:`redact`."""

    def shown(value: object) -> object:
        if isinstance(value, str) and "://" in value:
            return redact(value)
        if isinstance(value, tuple):
            return tuple(shown(item) for item in value)
        return value

    items = (f"{f.name}={shown(getattr(options, f.name))!r}" for f in fields(options) if f.repr)
    return f"{type(options).__name__}({', '.join(items)})"
