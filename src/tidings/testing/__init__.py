"""Testing kit: recorder, fake clock, waiting helpers, conformance suites, pytest fixtures.

``Recorder``, ``FakeClock`` and ``wait_for`` are light; ``TransportSuite`` and ``EventStoreSuite``
import pytest and load on first use. The pytest plugin (installed with tidings) provides the
``tidings_bus``, ``tidings_inline_bus``, ``tidings_recorder``, ``tidings_clock`` and
``tidings_url`` fixtures (``pytest --tidings-url URL`` runs them on a broker). Seeded fault
injection (failing, slow and hanging handlers; a transport that duplicates, corrupts and drops)
lives in :mod:`tidings.testing.faults`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidings.testing.clock import FakeClock
from tidings.testing.recorder import Recorder, wait_for

if TYPE_CHECKING:
    from tidings.testing.eventstore_suite import EventStoreSuite
    from tidings.testing.transport_suite import TransportSuite

__all__ = ["EventStoreSuite", "FakeClock", "Recorder", "TransportSuite", "wait_for"]


def __getattr__(name: str) -> Any:
    if name == "EventStoreSuite":
        from tidings.testing.eventstore_suite import EventStoreSuite

        return EventStoreSuite
    if name == "TransportSuite":
        from tidings.testing.transport_suite import TransportSuite

        return TransportSuite
    raise AttributeError(f"module 'tidings.testing' has no attribute {name!r}")
