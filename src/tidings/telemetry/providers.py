"""Which OpenTelemetry provider a bus reports to: the one given, or the application's global one."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["provider_in_use"]


def provider_in_use(given: Any, api: str, get_global: str) -> Any | None:
    """``given``, else the global provider of API module ``api`` (``opentelemetry.trace``);
    None when that is the API's own proxy or no-op provider (nothing would be recorded) or the
    API is not installed."""
    if given is None:
        try:
            module = importlib.import_module(api)
        except ImportError:
            return None
        given = getattr(module, get_global)()
    if type(given).__module__.startswith(api):
        return None
    return given
