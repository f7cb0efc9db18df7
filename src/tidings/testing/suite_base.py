"""What the transport suite's cases share: fixtures, test messages, ready receivers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest

from tidings.message import Message
from tidings.testing.receiver import Receiver, Settle, TransportFactory, ack, prime, unique
from tidings.transports.base import Features, Transport

__all__ = ["RestartService", "TransportCases", "messages"]

RestartService = Callable[[], Awaitable[None]]
"""Restarts the broker (stops it, waits, starts it): the suite's ``restart_service`` fixture."""


def messages(
    count: int, prefix: str = "", key: Callable[[int], str | None] | None = None
) -> list[Message]:
    tag = unique("run")
    return [
        Message(
            "suite.item",
            f'{{"n":{n},"text":"{prefix}payload {n}"}}'.encode(),
            {"test": tag, "n": str(n)},
            key(n) if key else None,
        )
        for n in range(count)
    ]


class TransportCases:
    """The base of the suite's case classes."""

    timeout: ClassVar[float] = 30.0
    """Seconds any one wait may take before the case fails naming what it waited for."""

    @pytest.fixture
    def restart_service(self) -> RestartService | None:
        return None

    # -- helpers ------------------------------------------------------------------------------

    def features(self, factory: TransportFactory) -> Features:
        return factory().features

    async def receive(
        self,
        transport: Transport,
        topic: str,
        group: str,
        *,
        settle: Settle = ack,
        prefetch: int = 256,
        count: int = 1,
    ) -> list[Receiver]:
        """``count`` receivers of one group on ``topic``, ready: what is published next reaches
        them."""
        receivers = [
            Receiver(
                transport.subscribe(topic, group=group, prefetch=prefetch), settle, self.timeout
            )
            for _ in range(count)
        ]
        await prime(transport, topic, receivers)
        return receivers
