"""What every generated document must be: valid against the official AsyncAPI 3.0.0 JSON Schema
(kept in ``data/``, see its README), with every local ``$ref`` pointing at something."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

_SCHEMA = json.loads((Path(__file__).parent / "data" / "asyncapi-3.0.0.json").read_text())
_VALIDATOR = Draft7Validator(_SCHEMA)


def assert_valid(doc: dict[str, Any]) -> None:
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors)
    broken = [ref for ref in _refs(doc) if not _resolves(doc, ref)]
    assert not broken, f"$refs to nothing: {broken}"


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """What the local reference ``ref`` (``#/a/b``) points at; KeyError if nothing."""
    found: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        found = found[part.replace("~1", "/").replace("~0", "~")]
    return found


def _resolves(doc: dict[str, Any], ref: str) -> bool:
    try:
        resolve(doc, ref)
    except KeyError:
        return False
    return True


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []
