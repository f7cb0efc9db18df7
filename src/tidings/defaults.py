"""The bus's defaults, each with its reason."""

from __future__ import annotations

from tidings.errors import ClosedError
from tidings.middleware.retry import Retry

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_HANDLER_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_RESTART",
]

DEFAULT_CONCURRENCY = 64
"""Calls at once of an ``async def`` handler that awaits, when its route does not say: one
waiting on I/O should not make every other message wait (the Go guide's signup flow runs 48x
faster than at 1, bench/b8_defaults.py), and a bound keeps a burst from starting a call per
message. A handler that cannot suspend (a ``def``, an ``async def`` that never awaits, a batch
handler) gets 1: more would only add Tasks, and one keeps the order of publication."""
DEFAULT_HANDLER_TIMEOUT = 60.0
"""Seconds a queued handler call may run by default: a hung call must not hold its message (and
its key, and a broker's lease) for ever."""
DEFAULT_RESTART = Retry(
    max_attempts=20, initial_delay=0.1, max_delay=30.0, give_up_on=(ClosedError,)
)
"""How consumer parts start again after an unexpected error: about eight minutes of tries."""
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""Bytes of an encoded payload, as the brokers' own defaults (NATS, Kafka): 1 MiB."""
