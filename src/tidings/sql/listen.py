"""LISTEN/NOTIFY wake-ups from PostgreSQL, on a connection of their own that comes back by itself.

A :class:`Listener` hands every notification's payload on one channel to ``notified``. When its
connection is lost (a server restart) it connects again in the background, every
:data:`_PAUSE` seconds until it works, and then awaits ``connected`` again: notifications sent
meanwhile are lost, so whoever waits must look again (``connected`` is also awaited after the
first connection, once LISTEN is in force: reading the current state there misses nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.errors import ClosedError
from tidings.sql.postgres import Postgres

__all__ = ["Listener"]

_log = logging.getLogger("tidings.sql")
_PAUSE = 0.5


class Listener:
    """LISTEN on ``channel`` of ``db``'s database; see the module docstring. ``notified`` runs in
    asyncpg's callback (it must not block); ``connected`` may read from the pool."""

    def __init__(
        self,
        db: Postgres,
        channel: str,
        *,
        notified: Callable[[str], None],
        connected: Callable[[], Awaitable[None]],
    ) -> None:
        self._db = db
        self._channel = channel
        self._notified = notified
        self._connected = connected
        self._connection: Any = None
        self._starting = asyncio.Lock()
        self._again: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        """Whether notifications come now (or the lost connection is being made again)."""
        return self._again is not None or (
            self._connection is not None and not self._connection.is_closed()
        )

    async def start(self) -> None:
        """Connect and LISTEN unless already listening; errors mapped by ``db.errors``."""
        async with self._starting:
            if self.listening:
                return
            with self._db.errors.mapping("listening"):
                await self._listen()
        await self._connected()

    async def aclose(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        self._closed = True
        again = self._again
        if again is not None:
            again.cancel()
            await asyncio.gather(again, return_exceptions=True)
        async with self._starting:  # a connection being made is closed by _listen itself
            connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()

    async def _listen(self) -> None:
        if self._db.closed:
            raise ClosedError(f"{self._db.name} is closed")
        connection = await self._db.connect()
        try:
            await connection.add_listener(self._channel, self._on_notification)
            connection.add_termination_listener(self._lost)
        except BaseException:
            await connection.close()
            raise
        if self._closed:  # closed while connecting: aclose() did not see this connection
            await connection.close()
            raise ClosedError(f"{self._db.name} is closed")
        self._connection = connection

    def _on_notification(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self._notified(payload)

    def _lost(self, connection: object) -> None:
        self._connection = None
        if not self._closed and self._again is None:
            self._again = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        try:
            while not self._closed:
                try:
                    async with self._starting:
                        await self._listen()
                    break
                except ClosedError:
                    return
                except Exception as exc:
                    if not self._db.errors.handles(exc):
                        _log.exception("LISTEN on %s failed for good", self._db.where)
                        return
                    _log.debug("LISTEN on %s failed, trying again: %s", self._db.where, exc)
                    await asyncio.sleep(_PAUSE)
        finally:
            self._again = None
        try:
            await self._connected()
        except Exception as exc:  # the waiters look again on their own timeouts
            _log.warning(
                "looking again after LISTEN on %s came back failed: %r", self._db.where, exc
            )
