"""Is this bus ready to take work? The one answer behind ``/readyz`` and every framework's
readiness probe.

Ready means: the bus runs, every consumer is ``running`` (see :mod:`tidings.health`), and the
broker or database answers a ping within ``timeout`` (for transports that are :class:`Pingable`).
The report is plain data, so that an HTTP endpoint can send it as JSON with 200 or 503.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tidings.errors import TidingsError
from tidings.transports.base import Pingable
from tidings.workers import worker_id

if TYPE_CHECKING:
    from tidings.bus import Bus

__all__ = ["Readiness", "check"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """The bus's readiness right now."""

    ready: bool
    running: bool
    broker: str
    """``ok``, ``unreachable: <reason>`` (the client's error, or which broker gave no answer in
    time), or ``not checked`` for in-process transports."""
    routes: tuple[dict[str, Any], ...]
    """Each consumer's :class:`~tidings.health.RouteHealth` as a dictionary."""
    worker: int | None = None
    """This process's number among ``tidings run --workers N`` (:func:`tidings.worker_id`)."""

    @property
    def status(self) -> int:
        """The HTTP status a readiness probe answers with."""
        return 200 if self.ready else 503

    def as_json(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "running": self.running,
            "broker": self.broker,
            "routes": list(self.routes),
            "worker": self.worker,
        }


async def check(bus: Bus, *, timeout: float = 2.0) -> Readiness:
    """Ask the bus's consumers and ping its broker (at most ``timeout`` seconds)."""
    health = bus.health()
    broker = await _ping(bus, timeout)
    return Readiness(
        ready=health.ok and broker in ("ok", "not checked"),
        running=health.running,
        broker=broker,
        routes=tuple(asdict(route) for route in health.routes),
        worker=worker_id(),
    )


async def _ping(bus: Bus, timeout: float) -> str:
    transport = bus.transport
    if not isinstance(transport, Pingable):
        return "not checked"
    try:
        async with asyncio.timeout(timeout):
            await transport.ping()
    except TimeoutError:
        # No error to quote (a network that drops packets): name the broker kept waiting for.
        where = type(transport).__name__ + (f" at {bus.url}" if bus.url else "")
        return f"unreachable: {where} gave no answer within {timeout:g} s"
    except (TidingsError, OSError) as exc:
        return f"unreachable: {exc}"
    return "ok"
