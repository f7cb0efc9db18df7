"""A transport's background task that must not die silently.

A task a transport starts on its own (a lease keeper, a flush loop) has nobody awaiting it: if it
ended on an unexpected error, the error would surface at best as "Task exception was never
retrieved" when the task is collected, and what the task kept up (leases, acks) would stop
without a word. :func:`supervise` runs such a task's body again instead, after a pause that
doubles up to a cap, and logs the error with its traceback once per spell of failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["supervise"]

logger = logging.getLogger("tidings.transports")

_FIRST_PAUSE = 0.05


async def supervise(what: str, run: Callable[[], Awaitable[None]], *, cap: float = 5.0) -> None:
    """Run ``run()`` until it returns; start it again whenever it raises an Exception.

    The first failure of a spell is logged (an error naming ``what``, with the traceback), the
    ones that follow it are not; a run that lasted longer than ``cap`` seconds before failing
    starts a new spell. Pauses before a restart double from 0.05 s up to ``cap`` seconds.
    Cancellation (and other BaseExceptions) ends it at once.
    """
    pause = 0.0
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except Exception:  # whatever it is, the task must go on: logged, then restarted
            if time.monotonic() - started > cap:
                pause = 0.0  # it ran well for a while: a new spell
            if pause == 0.0:
                logger.exception("%s failed; it restarts (later failures are not logged)", what)
            pause = min(max(pause * 2, _FIRST_PAUSE), cap)
        await asyncio.sleep(pause)  # capped backoff before the restart
