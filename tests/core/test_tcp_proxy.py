"""``tidings.testing.faults.TcpProxy``: forwards a TCP connection byte for byte, cuts it, and lets
connections through again once restored, in front of an echo server of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tidings.testing.faults import TcpProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server, TcpProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as proxy:
        yield proxy


async def _round_trip(proxy: TcpProxy, data: bytes = b"ping\n") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), 5)
    finally:
        writer.close()


async def test_forwards_both_ways(proxy: TcpProxy) -> None:
    assert await _round_trip(proxy, b"x" * 200_000 + b"\n") == b"x" * 200_000 + b"\n"


async def test_a_cut_closes_live_connections_and_resets_new_ones(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello\n")
    assert await reader.readline() == b"hello\n"

    await proxy.cut()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the live one ended
    writer.close()
    with pytest.raises(ConnectionError):
        await _round_trip(proxy)

    await proxy.restore()
    assert await _round_trip(proxy) == b"ping\n"


async def test_a_held_connection_waits_for_the_restore(proxy: TcpProxy) -> None:
    await proxy.cut(hold=True)
    pending = asyncio.ensure_future(_round_trip(proxy))
    done, _ = await asyncio.wait({pending}, timeout=0.2)  # no answer is the point: wait a while
    assert not done
    await proxy.restore()
    assert await pending == b"ping\n"


def test_no_address_before_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        TcpProxy("127.0.0.1", 5672).redirect("amqp://guest:guest@127.0.0.1:5672/")


async def test_redirect_points_a_url_at_the_proxy(proxy: TcpProxy) -> None:
    assert proxy.redirect("amqp://guest:guest@127.0.0.1:5672/vh?x=1") == (
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/vh?x=1"
    )
    assert proxy.redirect("nats://127.0.0.1:4222") == f"nats://127.0.0.1:{proxy.port}"
