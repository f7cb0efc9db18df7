"""Which OpenTelemetry providers tidings reports to: the ones given, or the global ones."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["Telemetry", "provider_in_use"]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The OpenTelemetry providers a bus or an event store reports to; None: the global one, if
    set."""

    tracer_provider: Any = None
    meter_provider: Any = None


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
