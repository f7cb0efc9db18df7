"""The JSON Schemas of event classes, as AsyncAPI Schema Objects.

msgspec describes frozen dataclasses and Structs, with every type they hold, in one call
(``msgspec.json.schema_components``); pydantic models describe themselves
(``model_json_schema``). Both write JSON Schema 2020-12, while the AsyncAPI Schema Object is a
superset of draft 07: :func:`draft7` rewrites the two things that read differently there (tuples
written with ``prefixItems``, ``discriminator`` objects where AsyncAPI takes a property name).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.codec import pydantic_base

__all__ = ["draft7", "payload_schemas"]

_PREFIX = "#/components/schemas/"
_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
"""Keywords whose values map names to schemas (a property may well be called ``discriminator``)."""
_DATA = frozenset({"enum", "const", "default", "examples", "required"})
"""Keywords whose values are data, not schemas."""


def payload_schemas(classes: Sequence[type]) -> tuple[dict[type, Any], dict[str, Any]]:
    """Each class's payload schema (a reference into the components), and the components.

    A class that neither msgspec nor pydantic can describe gets a schema that any JSON value
    meets, with a description saying so: one odd class does not stop the document. Components
    are named by msgspec (the class name; module and name when two classes share a name) and by
    pydantic (the model name); raises ValueError when a pydantic model's name is taken by another
    class.
    """
    model = pydantic_base()
    models = [c for c in classes if model is not None and issubclass(c, model)]
    others = [c for c in classes if c not in models]
    described = [c for c in others if _describable(c)]
    payloads: dict[type, Any] = {
        c: {"description": f"{c.__qualname__}: no JSON Schema could be generated"}
        for c in others
        if c not in described
    }
    refs, components = msgspec.json.schema_components(described, ref_template=_PREFIX + "{name}")
    payloads.update(zip(described, refs, strict=True))
    for cls in models:
        schema = cls.model_json_schema(ref_template=_PREFIX + "{model}")  # type: ignore[attr-defined]
        for name, inner in [*schema.pop("$defs", {}).items(), (cls.__name__, schema)]:
            if components.setdefault(name, inner) != inner:
                raise ValueError(f"two classes have the schema name {name!r}: rename one")
        payloads[cls] = {"$ref": _PREFIX + cls.__name__}
    return payloads, {name: draft7(schema) for name, schema in components.items()}


def draft7(schema: Any) -> Any:
    """``schema`` (JSON Schema 2020-12) as draft 07 reads it, with AsyncAPI's ``discriminator``."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DATA:
            out[key] = value
        elif key in _MAPS and isinstance(value, dict):
            out[key] = {name: draft7(inner) for name, inner in value.items()}
        elif isinstance(value, list):
            out[key] = [draft7(inner) for inner in value]
        else:
            out[key] = draft7(value)
    if "prefixItems" in out:  # a tuple: draft 07 lists its items and says what may follow
        rest = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        if rest is not None:
            out["additionalItems"] = rest
    if isinstance(out.get("discriminator"), dict):
        out["discriminator"] = out["discriminator"]["propertyName"]
    return out


def _describable(cls: type) -> bool:
    try:
        msgspec.json.schema_components([cls])
    except (TypeError, ValueError):
        return False
    return True
