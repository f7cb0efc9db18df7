"""Suite cases: a transport that talks to a broker or a database can ping it."""

from __future__ import annotations

import pytest

from tidings.errors import ClosedError
from tidings.testing.receiver import TransportFactory, opened
from tidings.testing.suite_base import TransportCases
from tidings.transports.base import Pingable

__all__ = ["PingCases"]


class PingCases(TransportCases):
    """``ping()``, which readiness checks (``/readyz``) rely on."""

    async def test_ping(self, transport_factory: TransportFactory) -> None:
        """A persistent transport is Pingable; its ping answers while the broker runs, before
        and after ``start``, and raises ClosedError once the transport is closed."""
        transport = transport_factory()
        if transport.features.in_process:
            pytest.skip("an in-process transport has no broker to ping")
        assert isinstance(transport, Pingable), "a transport with a broker must be Pingable"
        try:
            await transport.ping()  # connects if needed
        finally:
            await transport.aclose()
        async with opened(transport_factory) as started:
            assert isinstance(started, Pingable)
            await started.ping()
            await started.ping()
        with pytest.raises(ClosedError):
            await started.ping()
