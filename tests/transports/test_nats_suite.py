"""The conformance suite on the NATS JetStream transport (the local nats-server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from brokers import NATS, delete_streams, shell

from tidings.testing.receiver import TransportFactory
from tidings.testing.suite_foreign import ForeignPublish
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.nats import NatsOptions, NatsTransport

_CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nPING\r\n'


async def restart_nats() -> None:
    """Stop the local nats-server (waiting until it exited), start it, wait until it listens."""
    await stop_nats()
    await start_nats()


async def stop_nats() -> None:
    """Stop the local nats-server and wait until it exited."""
    await shell("start-stop-daemon --stop --oknodo --retry 10 --exec /usr/sbin/nats-server")


async def start_nats() -> None:
    """Start the local nats-server and wait until it listens."""
    await shell(NATS.start)
    await shell("until bash -c 'echo > /dev/tcp/127.0.0.1/4222' 2>/dev/null; do sleep 0.05; done")


async def raw_publish(url: str, subject: str, data: bytes, headers: dict[str, bytes]) -> None:
    """One ``HPUB`` over a plain socket: unlike nats-py's publish, it sends header values that
    are not UTF-8 as they are. Returns after the server answered a PING sent after it."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port or 4222)
    try:
        block = b"NATS/1.0\r\n" + b"".join(
            b"%s: %s\r\n" % (k.encode(), v) for k, v in headers.items()
        )
        block += b"\r\n"
        command = b"HPUB %s %d %d\r\n%s%s\r\nPING\r\n" % (
            subject.encode(),
            len(block),
            len(block) + len(data),
            block,
            data,
        )
        writer.write(_CONNECT + command)
        pongs = 0
        while pongs < 2:  # one for CONNECT, one for the HPUB: the server has taken it
            line = await reader.readline()
            if not line:
                raise ConnectionError("nats-server closed the connection")
            if line.startswith(b"-ERR"):
                raise AssertionError(f"nats-server refused the message: {line!r}")
            pongs += line.startswith(b"PONG")
    finally:
        writer.close()
        await writer.wait_closed()


class TestNatsTransport(TransportSuite):
    @pytest.fixture
    async def nats_options(self, nats_url: str) -> AsyncIterator[NatsOptions]:
        tag = uuid.uuid4().hex[:10]
        options = NatsOptions.from_url(f"{nats_url}?stream=S{tag}&prefix=s{tag}&ack_wait=2")
        yield options
        await delete_streams(nats_url, options)

    @pytest.fixture
    def transport_factory(self, nats_options: NatsOptions) -> TransportFactory:
        return lambda: NatsTransport(nats_options)

    @pytest.fixture
    def scale_url(self, nats_url: str, nats_options: NatsOptions) -> str:
        # Six partitions: two for each of three workers. With sixteen, 90 keys hash so unevenly
        # that a worker holding the five smallest partitions gets 11% of them (the cases ask 15%).
        return (
            f"{nats_url}?stream={nats_options.stream}&prefix={nats_options.prefix}"
            "&ack_wait=5&partitions=6"
        )

    @pytest.fixture
    def restart_service(self, nats_url: str) -> RestartService | None:
        if nats_url != NATS.default:
            return None  # only the machine's own server is ours to restart
        return restart_nats

    @pytest.fixture
    def foreign_publish(self, nats_url: str, nats_options: NatsOptions) -> ForeignPublish:
        """Core NATS publishes to the stream's subjects; ``tidings-id`` as ``Nats-Msg-Id``."""

        async def publish(topic: str, data: bytes, headers: dict[str, bytes]) -> None:
            named = {("Nats-Msg-Id" if k == "tidings-id" else k): v for k, v in headers.items()}
            await raw_publish(nats_url, f"{nats_options.prefix}.{topic}", data, named)

        return publish
