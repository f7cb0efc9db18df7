"""Seeded fault injection for tests: handlers that fail, are slow or hang, a transport that
duplicates, corrupts and drops, and a TCP proxy that cuts a client off its broker.

Handler faults (:class:`HandlerFault`) are middleware and handler wrappers::

    bus.subscribe(Deposited, handle, middleware=[fail_times(2)], retry=Retry(max_attempts=3))
    bus.subscribe(Deposited, fail_with_probability(0.1, seed=7).wrap(handle_batch))

Transport faults wrap any transport::

    transport = FaultyTransport(SqliteTransport(url), corrupt_payload=Chance(0.05, seed=1))
    bus = Bus(transport)

:class:`TcpProxy` stands between a client and a real broker and cuts the network on demand::

    async with TcpProxy("127.0.0.1", 6379) as proxy:
        bus = Bus(proxy.redirect("redis://127.0.0.1:6379/0"))
        await proxy.cut()  # ... and later await proxy.restore()

Triggers decide when a fault strikes: :class:`Times` (the first N chances) or :class:`Chance`
(a probability drawn from ``random.Random(seed)``). Every fault records what it did (``struck``,
``injected``) so a test can count it.
"""

from __future__ import annotations

from tidings.testing.faults.handlers import (
    HandlerFault,
    InjectedFault,
    fail,
    fail_times,
    fail_with_probability,
    hang,
    slow,
)
from tidings.testing.faults.network import TcpProxy
from tidings.testing.faults.transport import FaultKind, FaultyTransport, Injection
from tidings.testing.faults.triggers import Chance, Times, Trigger

__all__ = [
    "Chance",
    "FaultKind",
    "FaultyTransport",
    "HandlerFault",
    "InjectedFault",
    "Injection",
    "Times",
    "TcpProxy",
    "Trigger",
    "fail",
    "fail_times",
    "fail_with_probability",
    "hang",
    "slow",
]
