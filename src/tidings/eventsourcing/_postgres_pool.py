"""A small asyncpg connection pool for the PostgreSQL event store.

asyncpg's own ``Pool`` returns every connection through ``asyncio.shield`` (a new task) and, by
default, a reset query: on this store's one-statement operations that doubled the latency of a
read. This pool hands out idle connections without yielding to the loop and takes them back in
a plain method call. A connection that saw an error (or a cancellation, which may leave a query
in flight) is closed rather than reused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from tidings.errors import ClosedError

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """Up to ``size`` connections made by ``connect``; idle ones are reused, last in first out."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[Any] = []
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A connection for the duration of the block."""
        connection = await self._acquire()
        try:
            yield connection
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        connection = await self._acquire()
        try:
            rows: list[Any] = await connection.fetch(query, *args)
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        connection = await self._acquire()
        try:
            row = await connection.fetchrow(query, *args)
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)
        return row

    async def execute(self, query: str, *args: Any) -> None:
        await self.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return None if row is None else row[0]

    async def close(self) -> None:
        """Close idle connections now and busy ones when they come back; fail waiters."""
        self._closed = True
        idle, self._idle = self._idle, []
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ClosedError("the event store is closed"))
        self._waiters.clear()
        await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)

    async def _acquire(self) -> Any:
        while True:
            if self._closed:
                raise ClosedError("the event store is closed")
            if self._idle:
                return self._idle.pop()
            if self._open < self._size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _release(self, connection: Any) -> None:
        if self._closed or connection.is_closed() or connection.is_in_transaction():
            self._discard(connection)
            return
        self._idle.append(connection)
        self._wake_one()

    def _discard(self, connection: Any) -> None:
        self._open -= 1
        connection.terminate()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
