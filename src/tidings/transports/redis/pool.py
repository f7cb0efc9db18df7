"""A connection pool whose commands wait for a free connection when all are busy.

redis-py's own :class:`~redis.asyncio.ConnectionPool` fails a command once ``max_connections``
are busy (at 100 by default since redis-py 6), and its
:class:`~redis.asyncio.BlockingConnectionPool`, which waits instead, takes a condition lock and
a timeout for every command, busy or not: a fifth of an awaited ``XADD``'s time on loopback
(see docs/benchmarks.md). Here a semaphore counts the connections in use, and only a command
that finds none free waits (up to ``timeout``); otherwise the command costs what it costs on
the plain pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["WaitingPool"]


class WaitingPool(ConnectionPool):
    """At most ``max_connections`` connections in use; a command finding them all busy waits up
    to ``timeout`` seconds for one (then fails with redis-py's ``ConnectionError``, as
    :class:`~redis.asyncio.BlockingConnectionPool` does). Use from one event loop."""

    def __init__(self, *, max_connections: int, timeout: float, **settings: Any) -> None:
        super().__init__(max_connections=max_connections, **settings)
        self._timeout = timeout
        self._free = asyncio.Semaphore(max_connections)
        self._lent: set[AbstractConnection] = set()  # each holds one unit of ``_free``

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._free.locked():
            try:
                async with asyncio.timeout(self._timeout):
                    await self._free.acquire()
            except TimeoutError:
                raise RedisConnectionError("No connection available.") from None
        else:
            await self._free.acquire()  # returns without suspending
        try:
            # On a failed connect redis-py releases the connection itself, before it is lent.
            connection: AbstractConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            self._free.release()
            raise
        self._lent.add(connection)
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._lent:
                self._lent.discard(connection)
                self._free.release()
