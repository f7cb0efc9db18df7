"""PostgreSQL, once for the transport and the event store: a pool, errors mapped, retries.

:class:`Postgres` is one database as tidings uses it: a small pool of asyncpg connections opened
by :meth:`Postgres.open` (which also runs the caller's ``prepare``: its tables and functions),
:meth:`Postgres.run` for a piece of work on a pooled connection, and :class:`PostgresErrors`, the
one mapping of asyncpg's and the socket's exceptions to tidings' at the boundary:

* the server cannot be reached, restarts or refuses clients for now →
  :class:`~tidings.errors.ServiceUnavailable`;
* any other error of the database or of asyncpg → :class:`~tidings.errors.TransportError`;
* tidings' own errors pass unchanged; both name host, port and database, never a password.

LISTEN/NOTIFY wake-ups are in :mod:`tidings.sql.listen`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from tidings._waiters import wake_one
from tidings.errors import ClosedError, ServiceUnavailable, TidingsError, TransportError

__all__ = ["Pool", "Postgres", "PostgresErrors", "where"]

T = TypeVar("T")

_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InterfaceError,
)
"""The server went away, is restarting, or does not take clients now (an InterfaceError is a
connection that closed under the call)."""
_CLIENT = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
_RETRY_PAUSE = 0.2
_CONNECT_TIMEOUT = 10.0


def where(dsn: str) -> str:
    """``host:port/database`` of ``dsn``, for messages (no user, no password)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


class PostgresErrors:
    """asyncpg's exceptions as tidings errors, for the database at ``where``."""

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def handles(self, exc: BaseException) -> bool:
        """Whether :meth:`mapping` turns ``exc`` into a tidings error."""
        return isinstance(exc, _UNREACHABLE + _CLIENT)

    def gone(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the server is unreachable (worth trying again later)."""
        return isinstance(exc, _UNREACHABLE) and not isinstance(
            exc, asyncpg.exceptions.ClientConfigurationError
        )

    def error(self, exc: BaseException, doing: str) -> TidingsError:
        """The tidings error for ``exc``, raised while ``doing`` something."""
        if isinstance(exc, TidingsError):
            return exc
        if self.gone(exc):
            return ServiceUnavailable(
                f"PostgreSQL is not reachable at {self.where} ({doing}): {exc}"
            )
        return TransportError(f"PostgreSQL failed {doing} at {self.where}: {exc}")

    def mapping(self, doing: str) -> _Mapping:
        """``with errors.mapping("reading"):`` raises the block's client errors as tidings errors
        (``raise … from exc``); other exceptions, bugs included, pass untouched."""
        return _Mapping(self, doing)


class _Mapping:
    __slots__ = ("doing", "errors")

    def __init__(self, errors: PostgresErrors, doing: str) -> None:
        self.errors = errors
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, TidingsError) or not self.errors.handles(exc):
            return
        raise self.errors.error(exc, self.doing) from exc


class Pool:
    """Up to ``size`` connections made by ``connect``; idle ones are reused, last in first out.

    Chosen over asyncpg's ``Pool``, which returns every connection through ``asyncio.shield`` (a
    new task) and a reset query: on one-statement operations that doubled their latency. This
    pool hands out an idle connection without yielding to the loop and takes it back in a plain
    method call, so whoever uses a connection must leave no session state on it (a SET, a LISTEN,
    a session advisory lock). A connection that saw an error (or a cancellation, which may leave
    a query in flight), or comes back inside a transaction, is closed rather than reused.
    """

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
                waiter.set_exception(ClosedError("the PostgreSQL connections are closed"))
        self._waiters.clear()
        await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)

    async def _acquire(self) -> Any:
        while True:
            if self._closed:
                raise ClosedError("the PostgreSQL connections are closed")
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._open -= 1  # the server closed it (a restart): open another
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
        wake_one(self._waiters)

    def _discard(self, connection: Any) -> None:
        self._open -= 1
        connection.terminate()
        wake_one(self._waiters)


class Postgres:
    """One PostgreSQL database: a :class:`Pool` of ``pool_size`` connections to ``dsn`` with the
    session ``settings``, and the errors of its calls mapped (:attr:`errors`).

    Constructing it does no I/O. ``name`` says what uses it, in messages (``"the PostgreSQL
    transport at host:5432/db"``). ``prepare(connection)`` runs once, when :meth:`open` first
    succeeds, before anything else uses the pool: the place to create tables and start
    listening. :meth:`run` tries again for ``retry_for`` seconds while the server is unreachable.
    One event loop; safe for concurrent use by its tasks.
    """

    def __init__(
        self,
        dsn: str,
        *,
        name: str,
        pool_size: int,
        settings: Mapping[str, str],
        prepare: Callable[[Any], Awaitable[None]],
        retry_for: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.where = where(dsn)
        self.errors = PostgresErrors(self.where)
        self._size = pool_size
        self._settings = dict(settings)
        self._prepare = prepare
        self._retry_for = retry_for
        self._pool: Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pool(self) -> Pool:
        """The open pool; raises ClosedError before :meth:`open` and after :meth:`aclose`."""
        if self._pool is None or self._closed:
            raise ClosedError(f"{self.name} is closed")
        return self._pool

    async def connect(self) -> Any:
        """A new connection outside the pool, with the pool's settings (the caller closes it);
        asyncpg's errors are the caller's to map."""
        return await asyncpg.connect(
            self.dsn, server_settings=self._settings, timeout=_CONNECT_TIMEOUT
        )

    async def open(self) -> None:
        """Connect and prepare; idempotent. Raises ServiceUnavailable when the server cannot be
        reached, TransportError when it refuses (a wrong password, a failing ``prepare``)."""
        if self._closed:
            raise ClosedError(f"{self.name} is closed")
        async with self._opening:
            if self._pool is not None:
                return
            pool = Pool(self.connect, self._size)
            try:
                with self.errors.mapping("connecting"):
                    async with pool.connection() as connection:
                        await self._prepare(connection)
            except BaseException:
                await pool.close()
                raise
            if self.closed:  # closed while connecting: aclose() did not see this pool
                await pool.close()
                raise ClosedError(f"{self.name} is closed")
            self._pool = pool

    async def run(
        self, work: Callable[[Any], Awaitable[T]], *, doing: str, retry: bool = True
    ) -> T:
        """``await work(connection)`` on a pooled connection (opening first if needed), errors
        mapped. With ``retry``, while the server is unreachable the work is tried again for up
        to ``retry_for`` seconds: it must be safe to repeat. Raises ClosedError once closed."""
        if self._pool is None:
            await self.open()
        deadline = time.monotonic() + (self._retry_for if retry else 0.0)
        while True:
            pool = self.pool
            try:
                async with pool.connection() as connection:
                    return await work(connection)
            except TidingsError:
                raise
            except Exception as exc:
                if not self.errors.handles(exc):
                    raise
                if self._closed:
                    raise ClosedError(f"{self.name} closed") from exc
                if not self.errors.gone(exc) or time.monotonic() >= deadline:
                    raise self.errors.error(exc, doing) from exc
            await asyncio.sleep(_RETRY_PAUSE)  # the server is restarting: try again shortly

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A pooled connection inside a transaction, for statements tidings does not control (a
        projection's own): whatever session state they leave is reset before the connection
        goes back. Their errors are not mapped."""
        async with self.pool.connection() as connection:
            async with connection.transaction():
                yield connection
            await connection.reset()

    async def aclose(self) -> None:
        """Close the pool (busy connections when they come back). Idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
