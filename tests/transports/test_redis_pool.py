"""The Redis transport's connection pool: a command finding every connection busy waits for
one, up to the timeout, and a connection that fails to open does not use one up."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tidings.transports.redis.pool import WaitingPool


def _pool(redis_url: str, *, connections: int, timeout: float) -> WaitingPool:
    address = urlsplit(redis_url)
    return WaitingPool(
        max_connections=connections, timeout=timeout, host=address.hostname, port=address.port
    )


async def test_a_command_waits_for_a_busy_connection(redis_url: str) -> None:
    pool = _pool(redis_url, connections=1, timeout=10.0)
    try:
        held = await pool.get_connection()
        waiting = asyncio.ensure_future(pool.get_connection())
        await asyncio.sleep(0)  # it asked, and found the one connection lent
        assert not waiting.done()
        await pool.release(held)
        assert await waiting is held
        await pool.release(held)
    finally:
        await pool.disconnect()


async def test_a_command_fails_once_no_connection_came_free_in_time(redis_url: str) -> None:
    pool = _pool(redis_url, connections=1, timeout=0.05)
    try:
        held = await pool.get_connection()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await pool.get_connection()
        await pool.release(held)
        await pool.release(await pool.get_connection())  # the one connection is free again
    finally:
        await pool.disconnect()


async def test_a_connection_that_failed_to_open_is_free_again() -> None:
    with socket.socket() as unused:  # a loopback port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    pool = _pool(f"redis://127.0.0.1:{port}", connections=1, timeout=0.05)
    try:
        for _ in range(3):  # the third would wait, then fail otherwise, if a failure kept one
            with pytest.raises(RedisConnectionError, match=f"{port}"):
                await pool.get_connection()
    finally:
        await pool.disconnect()
