"""Riding out a database that is unavailable for a while (restarting, or locked by a backup).

A subscription must not end for it: it tries again, waiting longer each time up to a cap, and
says so once when the trouble begins and once when it is over, not on every try.
"""

from __future__ import annotations

import logging
import time

__all__ = ["Outage"]

_log = logging.getLogger("tidings.transports")


class Outage:
    """One subscription's spells of unavailability, for logging and pacing the retries.

    :meth:`failed` after each failed try returns how long to wait before the next one: ``first``
    seconds, doubling up to ``cap``; :meth:`over` after a try that worked.
    """

    __slots__ = ("_cap", "_delay", "_first", "_since", "_what")

    def __init__(self, what: str, *, first: float, cap: float) -> None:
        self._what = what
        self._first = first
        self._cap = max(cap, first)
        self._delay = first
        self._since: float | None = None

    def failed(self, error: BaseException) -> float:
        """Record a failed try; the seconds to wait before the next one."""
        if self._since is None:
            self._since = time.monotonic()
            self._delay = self._first
            _log.warning("%s is unavailable, trying again until it works: %s", self._what, error)
        else:
            self._delay = min(self._delay * 2, self._cap)
        return self._delay

    def over(self) -> None:
        """Record a try that worked; logs the end of a spell."""
        if self._since is not None:
            lasted = time.monotonic() - self._since
            self._since = None
            _log.warning("%s is available again after %.1fs", self._what, lasted)
