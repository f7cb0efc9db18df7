"""How a consumer survives its own parts failing: restart with capped backoff, or give up.

An unexpected error in a part of a consumer (fetching from a broker that went away, a worker
whose ack failed) is logged once with the route; the part waits out the ``restart`` policy's
backoff and starts again, and further failures in a row are logged at debug level only. Progress
anywhere resets the count. When the policy runs out the consumer is ``failed``: it says so once,
at error level, and the bus is told (``bus.consumer_failed()``, ``tidings run`` exits 2).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tidings.clock import Clock
from tidings.health import ConsumerState
from tidings.middleware.retry import Retry

__all__ = ["Supervision"]

_log = logging.getLogger("tidings.consumer")


class Supervision:
    """One consumer's state, failures in a row and restarts."""

    __slots__ = (
        "_clock",
        "_gave_up",
        "_name",
        "_restart",
        "failures",
        "last_error",
        "restarts",
        "state",
        "stopping",
    )

    def __init__(
        self, name: str, restart: Retry, clock: Clock, gave_up: Callable[[], None]
    ) -> None:
        self._name = name
        self._restart = restart
        self._clock = clock
        self._gave_up = gave_up
        self.stopping = asyncio.Event()
        """Set when the consumer stops: a backoff wait ends early."""
        self.failures = 0
        """Unexpected errors in a row, across the consumer's parts."""
        self.state: ConsumerState = "running"
        self.last_error: str | None = None
        self.restarts = 0

    async def recover(self, part: str, error: Exception) -> bool:
        """Log ``error`` of ``part`` and wait out the backoff; False once the restart policy
        gives up (the consumer has failed then, and ``gave_up`` was called)."""
        self.failures += 1
        self.restarts += 1
        self.last_error = f"{type(error).__name__}: {error}"
        delay = self._restart.next_delay(error, self.failures)
        if delay is None:
            self.state = "failed"
            _log.error(
                "%s: %s failed %d time(s) in a row; the consumer gives up",
                self._name,
                part,
                self.failures,
                exc_info=error,
            )
            self._gave_up()
            return False
        if self.failures == 1:
            _log.warning("%s: %s failed; starting it again", self._name, part, exc_info=error)
        else:
            _log.debug(
                "%s: %s failed again (%d in a row): %s", self._name, part, self.failures, error
            )
        self.state = "restarting"
        await self._pause(delay)
        return not self.stopping.is_set()

    def recovered(self) -> None:
        """A part made progress: the failures in a row are over."""
        if self.state == "restarting":
            _log.info("%s: running again after %d failure(s)", self._name, self.failures)
            self.state = "running"
        self.failures = 0

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if the consumer is stopped meanwhile."""
        sleeping = asyncio.ensure_future(self._clock.sleep(delay))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()
