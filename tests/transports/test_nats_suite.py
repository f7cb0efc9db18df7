"""The conformance suite on the NATS JetStream transport (the local nats-server)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from brokers import NATS, shell
from test_nats import delete_streams

from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.nats import NatsOptions, NatsTransport


async def restart_nats() -> None:
    """Stop the local nats-server (waiting until it exited), start it, wait until it listens."""
    await shell("start-stop-daemon --stop --oknodo --retry 10 --exec /usr/sbin/nats-server")
    await shell(NATS.start)
    await shell("until bash -c 'echo > /dev/tcp/127.0.0.1/4222' 2>/dev/null; do sleep 0.05; done")


class TestNatsTransport(TransportSuite):
    @pytest.fixture
    async def transport_factory(self, nats_url: str) -> AsyncIterator[TransportFactory]:
        tag = uuid.uuid4().hex[:10]
        options = NatsOptions.from_url(f"{nats_url}?stream=S{tag}&prefix=s{tag}&ack_wait=2")
        yield lambda: NatsTransport(options)
        await delete_streams(nats_url, options)

    @pytest.fixture
    def restart_service(self, nats_url: str) -> RestartService | None:
        if nats_url != NATS.default:
            return None  # only the machine's own server is ours to restart
        return restart_nats
