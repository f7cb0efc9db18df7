"""One SQLite file, opened the same way for the SQLite transport and the SQLite event store.

:class:`Database` opens two connections to the file in WAL mode (readers never wait for the
writer): a *writer*, behind a group-commit :class:`~tidings.sql.sqlite_writer.Writer`, and a
query-only *reader*. Both are used on the event-loop thread, because a short SQLite call costs
less than handing it to a thread; only waits for another connection's write lock, and opening the
file, go to the database's own thread.

Errors: sqlite3's become :class:`~tidings.errors.TransportError` naming the file (its
:class:`ServiceUnavailable` when the file cannot be opened, or another connection held the write
lock for ``busy_timeout`` seconds); using a closed database raises
:class:`~tidings.errors.ClosedError`.

:class:`Doorbell` wakes this process's waiters on a file after a commit, from any thread or loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from tidings.errors import ClosedError, ServiceUnavailable, TransportError
from tidings.sql.sqlite_writer import Job, Writer, is_busy

__all__ = ["Database", "Doorbell", "Schema", "Synchronous", "fetch"]

T = TypeVar("T")

Synchronous = Literal["NORMAL", "FULL"]
"""``NORMAL`` survives a crash of the process, ``FULL`` also a power loss (an fsync per commit)."""

_WAL_KEPT = 64 << 20
"""Bytes the write-ahead log file is cut back to after a checkpoint."""
_CACHE_KIB = 32_000
_MMAP = 256 << 20


@dataclass(frozen=True, slots=True)
class Schema:
    """What one user of a file keeps in it, and needs of its connections."""

    tables: str
    """``CREATE … IF NOT EXISTS`` statements, run in one transaction at every open."""
    upgrade: Callable[[sqlite3.Connection], None] | None = None
    """Adds what files made by earlier versions lack; runs in the same transaction."""
    functions: Sequence[tuple[str, int, Callable[..., Any]]] = ()
    """``(name, arity, function)`` of the SQL functions both connections get (deterministic)."""
    pragmas: Sequence[str] = ()
    """More settings of the writer connection (``"secure_delete = ON"``)."""
    incremental_vacuum: bool = False
    """Create a new file in incremental auto_vacuum mode, so that free pages can be given back
    (an existing file keeps its mode until a VACUUM)."""


def fetch(
    connection: sqlite3.Connection, sql: str, parameters: Any = (), *, name: str
) -> list[Any]:
    """Every row of one query; sqlite3 errors become TransportError (ClosedError once closed)."""
    try:
        return connection.execute(sql, parameters).fetchall()
    except sqlite3.ProgrammingError as exc:
        if "closed" in str(exc):
            raise ClosedError(f"{name} is closed") from exc
        raise TransportError(f"{name}: read failed: {exc}") from exc
    except sqlite3.Error as exc:
        raise TransportError(f"{name}: read failed: {exc}") from exc


class Database:
    """The connections to one SQLite file, opened by :meth:`open` and closed by :meth:`aclose`.

    ``name`` says what the file is in error messages (``"SQLite event store 'a.db'"``). Writes go
    through :attr:`writer` (``begin``/``committed`` are its hooks), reads through :meth:`read`.
    Not thread-safe: one event loop.
    """

    def __init__(
        self,
        path: str,
        schema: Schema,
        *,
        name: str,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        begin: Callable[[], None] = lambda: None,
        committed: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self.name = name
        self.schema = schema
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.reclaims = False
        """Whether the file gives free pages back (incremental auto_vacuum); known once open."""
        self._begin = begin
        self._committed = committed
        self._writer: Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    @property
    def key(self) -> str:
        """The file's real path: what identifies it to every connection of this process."""
        return os.path.realpath(self.path)

    @property
    def opened(self) -> bool:
        return self._writer is not None

    @property
    def writer(self) -> Writer:
        """The group-commit writer; raises ClosedError before :meth:`open` and after close."""
        if self._writer is None:
            raise ClosedError(f"{self.name} is closed")
        return self._writer

    async def open(self) -> None:
        """Open (and create) the file with its tables, in the database's thread. Idempotent;
        raises ServiceUnavailable when the file cannot be opened, ClosedError after close."""
        async with self._opening:
            if self._closed:
                raise ClosedError(f"{self.name} is closed")
            if self._writer is not None:
                return
            writer, reader = await self.off_loop(self._connect_both)
            self._reader = reader
            self._writer = Writer(
                writer, name=self.name, busy_timeout=self.busy_timeout,
                off_loop=self.off_loop, begin=self._begin, committed=self._committed,
            )  # fmt: skip

    async def write(self, job: Job[T]) -> T:
        """``job(connection)`` in the writer's next batch (see :class:`Writer`), opening the
        file first if needed."""
        if self._writer is None:
            await self.open()
        return await self.writer.run(job)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(reader)``: reads of committed data, never waiting for the writer; sqlite3 errors
        become TransportError. Another connection recovering the file after a crash may make
        it wait up to ``busy_timeout`` (rare)."""
        reader = self._reader
        if reader is None:
            raise ClosedError(f"{self.name} is closed")
        try:
            return fn(reader)
        except sqlite3.Error as exc:
            raise TransportError(f"{self.name}: read failed: {exc}") from exc

    def query(self, sql: str, parameters: Any = ()) -> list[Any]:
        """Every row of one query on the reader; see :func:`fetch`."""
        if self._reader is None:
            raise ClosedError(f"{self.name} is closed")
        return fetch(self._reader, sql, parameters, name=self.name)

    async def off_loop(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the database's thread. A cancelled caller waits for ``fn`` to finish:
        the connection is never used by two threads at once."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite")
        future = asyncio.get_running_loop().run_in_executor(self._thread, fn)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            raise

    async def aclose(self) -> None:
        """Write what is queued, then close both connections and the thread. Idempotent."""
        async with self._opening:
            if self._closed:
                return
            self._closed = True
        writer, reader = self._writer, self._reader
        try:
            if writer is not None:
                await writer.aclose()  # the writer's hooks may still use it meanwhile
                writer.connection.close()
        finally:
            self._writer = self._reader = None
            if reader is not None:
                reader.close()
            if self._thread is not None:
                self._thread.shutdown(wait=True)
                self._thread = None

    def _connect_both(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        writer = self._connect()
        try:
            self._prepare(writer)
            reader = self._connect()
            reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            writer.close()
            raise ServiceUnavailable(f"cannot open {self.name}: {exc}") from exc
        return writer, reader

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,  # opened here, used on the loop and in our thread
            )  # fmt: skip
            connection.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            connection.execute(f"PRAGMA mmap_size = {_MMAP}")
            for name, arity, function in self.schema.functions:
                connection.create_function(name, arity, function, deterministic=True)
        except sqlite3.Error as exc:
            raise ServiceUnavailable(f"cannot open {self.name}: {exc}") from exc
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Settings and tables, on the writer (in the opening thread, never on the loop)."""
        if self.schema.incremental_vacuum:
            # Only takes effect on a new file (before its first table).
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        # Connections opening a new file at once race to switch it to WAL; a loser gets the old
        # mode back instead of an error, and must not go on without WAL (readers would block).
        # The switch can also fail as busy at once, without waiting on the busy timeout (SQLite
        # does so where waiting could deadlock): that is one more reason to try again.
        deadline = time.monotonic() + self.busy_timeout
        while not _switched_to_wal(connection):
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("could not switch the database to WAL mode")
            time.sleep(0.01)
        connection.execute(f"PRAGMA synchronous = {self.synchronous}")
        connection.execute(f"PRAGMA journal_size_limit = {_WAL_KEPT}")
        for pragma in self.schema.pragmas:
            connection.execute(f"PRAGMA {pragma}")
        # One transaction: connections opening a new file at once create the tables once.
        connection.executescript(f"BEGIN IMMEDIATE;{self.schema.tables}COMMIT;")
        if self.schema.upgrade is not None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                self.schema.upgrade(connection)
                connection.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
        # On the loop the writer never waits for a lock: that is the Writer's thread's job.
        connection.execute("PRAGMA busy_timeout = 0")
        self.reclaims = connection.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def _switched_to_wal(connection: sqlite3.Connection) -> bool:
    try:
        mode: str = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            return False
        raise
    return mode.lower() == "wal"


class Doorbell:
    """Wakes this process's waiters on one file (by :attr:`Database.key`) after a commit.

    Rings may come from any thread; each waiter is an :class:`asyncio.Event` on its own loop (a
    level-triggered "look again", set by several sources, which is what a waiting subscription
    needs; :class:`~tidings._waiters.Wakeup` tracks positions of one loop's log instead).
    """

    _waiters: ClassVar[dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]]] = {}

    @classmethod
    def add(cls, key: str, event: asyncio.Event) -> None:
        cls._waiters.setdefault(key, set()).add((asyncio.get_running_loop(), event))

    @classmethod
    def discard(cls, key: str, event: asyncio.Event) -> None:
        waiters = cls._waiters.get(key)
        if waiters is None:
            return
        waiters -= {w for w in waiters if w[1] is event}
        if not waiters:
            del cls._waiters[key]

    @classmethod
    def ring(cls, key: str) -> None:
        waiters = cls._waiters.get(key)
        if not waiters:
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, event in tuple(waiters):
            if loop is here:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
