"""One SQLite file shared by the SQLite transport and its dead-letter store.

:class:`Database` owns one connection in WAL mode and runs short transactions on it. A call runs
right on the event loop, after yielding to other tasks once (a few microseconds to a
millisecond; a thread hand-off would cost more than the work), with a zero busy timeout; when
another connection holds the write lock, the call is retried in a dedicated thread that waits up
to ``busy_timeout``, so the loop never blocks on a lock, and then raises
:class:`ServiceUnavailable` (a lock held that long is a backup, a VACUUM or a migration: callers
that must not give up, like subscriptions, try again later). Calls are serialised by an asyncio
lock: at most one uses the connection at a time.

:class:`Doorbell` wakes subscriptions of this process when a transaction on the same file
committed something for them, so in-process delivery needs no polling.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ClassVar, TypeVar

from tidings.errors import ClosedError, ServiceUnavailable, TransportError
from tidings.topics import matches

__all__ = ["SCHEMA", "Database", "Doorbell", "transaction"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tidings_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    key TEXT,
    headers BLOB,
    data BLOB NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tidings_log_topic ON tidings_log (topic, seq);
CREATE TABLE IF NOT EXISTS tidings_cursors (
    id INTEGER PRIMARY KEY,
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    position INTEGER NOT NULL,
    active_at REAL,
    UNIQUE (grp, topic)
);
CREATE TABLE IF NOT EXISTS tidings_pending (
    cursor INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL DEFAULT 0,
    lease_until REAL,
    owner TEXT,
    PRIMARY KEY (cursor, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tidings_pending_key
    ON tidings_pending (cursor, key, seq) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS tidings_dead_letters (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    type TEXT NOT NULL,
    grp TEXT NOT NULL,
    data BLOB NOT NULL,
    headers BLOB NOT NULL,
    key TEXT,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    published_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tidings_dead_letters_topic ON tidings_dead_letters (topic, n);
"""

_INCREMENTAL = 2
"""``PRAGMA auto_vacuum``'s value for incremental mode."""
_RECLAIM = 32 << 20
"""Most bytes given back at once (moving pages holds the write lock: some tens of ms)."""
_WAL_KEPT = 64 << 20
"""Bytes the write-ahead log file is cut back to after a checkpoint."""
_SLICE = 0.5
"""Most seconds one wait for another connection's write lock blocks the thread."""
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether another connection holds the lock (extended codes like BUSY_RECOVERY too)."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _BUSY


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add what files made by earlier versions lack."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tidings_cursors)")}
    if "active_at" not in columns:
        conn.execute("ALTER TABLE tidings_cursors ADD COLUMN active_at REAL")


class transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    IMMEDIATE takes the write lock up front, so a busy database fails here, before any work,
    and the whole call can be retried elsewhere.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self._conn.execute("COMMIT")
        finally:
            # Also after a failed COMMIT: a transaction left open would hold the write lock.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")


class Database:
    """A connection to one SQLite file, opened on first use and closed by :meth:`aclose`.

    ``run(fn)`` calls ``fn(connection)`` and returns its result; ``fn`` must do its writes inside
    :class:`transaction` so that a busy retry repeats all of it. SQLite errors are raised as
    :class:`TransportError`; :class:`ServiceUnavailable` when the file cannot be opened, or
    another connection held the write lock for ``busy_timeout`` seconds (nothing of ``fn`` is
    written then).
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
        spare: int = 32 << 20,
    ) -> None:
        self.path = path
        self.spare = spare
        """Bytes of free pages the file keeps for new rows; :meth:`reclaim` gives back more."""
        self._busy = busy_timeout
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._thread: ThreadPoolExecutor | None = None
        self._closed = False
        self.reclaims = False
        """Whether the file gives free pages back (incremental auto_vacuum); known once open."""

    @property
    def key(self) -> str:
        """The file's real path: what identifies it to every connection of this process."""
        return os.path.realpath(self.path)

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"sqlite database {self.path!r} is closed")
        if self._conn is not None:
            return
        async with self._lock:
            if self._conn is None:
                self._conn = await self._off_loop(self._connect)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise ServiceUnavailable(f"cannot open sqlite database {self.path!r}: {exc}") from exc
        try:
            self._setup(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise ServiceUnavailable(f"cannot open sqlite database {self.path!r}: {exc}") from exc
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        # Only takes effect on a new file (before its first table): an existing file keeps its
        # mode until a VACUUM (see docs/transports/sqlite.md).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        # Connections opening a new file at once race to switch it to WAL; a loser gets the old
        # mode back instead of an error, and must not go on without WAL (readers would block).
        # The switch can also fail as busy at once, without waiting on the busy timeout (SQLite
        # does so where waiting could deadlock): that is one more reason to try again.
        deadline = time.monotonic() + self._busy
        while not self._switched_to_wal(conn):
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("could not switch the database to WAL mode")
            time.sleep(0.01)  # in the opening thread, never on the event loop
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_KEPT}")
        conn.create_function("tidings_match", 2, _matches, deterministic=True)
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        with transaction(conn):
            _upgrade(conn)
        conn.execute("PRAGMA busy_timeout=0")
        self.reclaims = conn.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL

    @staticmethod
    def _switched_to_wal(conn: sqlite3.Connection) -> bool:
        try:
            mode: str = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return False
            raise
        return mode.lower() == "wal"

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            await self.open()
        # The call itself never suspends: yield first, so that a loop of calls (a consumer that
        # fetches and acks without waiting) still lets the other tasks run.
        await asyncio.sleep(0)
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise ClosedError(f"sqlite database {self.path!r} is closed")
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise TransportError(f"sqlite {self.path!r}: {exc}") from exc
            return await self._wait_for_lock(conn, fn)

    async def _wait_for_lock(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        """Run ``fn`` in the thread while another connection holds the write lock, in slices of
        at most :data:`_SLICE` seconds (a cancellation waits for one slice at most); raises
        ServiceUnavailable once the lock was held for ``busy_timeout``."""
        deadline = time.monotonic() + self._busy
        while True:
            wait = max(min(deadline - time.monotonic(), _SLICE), 0.0)
            try:
                return await self._off_loop(partial(self._patiently, conn, fn, wait))
            except sqlite3.Error as exc:
                if time.monotonic() >= deadline:
                    raise ServiceUnavailable(
                        f"sqlite {self.path!r} stayed locked by another connection for "
                        f"{self._busy:g}s: {exc}"
                    ) from exc

    def _patiently(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], wait: float
    ) -> T:
        """Run ``fn`` in the thread, waiting up to ``wait`` seconds for other connections' write
        locks; a busy database is raised as it is, any other error as TransportError."""
        conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise
            raise TransportError(f"sqlite {self.path!r}: {exc}") from exc
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    async def reclaim(self) -> None:
        """Give the free pages beyond ``spare`` bytes back to the file system (at most
        :data:`_RECLAIM` bytes per call) if the file is in incremental auto_vacuum mode; the
        file shrinks at the next checkpoint."""
        if self.reclaims:
            await self.run(self._reclaim)

    def _reclaim(self, conn: sqlite3.Connection) -> None:
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        (page,) = conn.execute("PRAGMA page_size").fetchone()
        surplus = min(free - self.spare // page, _RECLAIM // page)
        if surplus > 0:
            # executescript runs the pragma to its end; execute() would free a single page
            conn.executescript(f"PRAGMA incremental_vacuum({surplus})")

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite")
        # The thread finishes its call even if we are cancelled; the lock stays held until then
        # so the connection is never used by two threads at once.
        future = asyncio.get_running_loop().run_in_executor(self._thread, fn)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            raise

    async def aclose(self) -> None:
        """Close the connection once no call is running. Idempotent."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None


class Doorbell:
    """Wakes this process's waiting subscriptions on one file after a commit.

    Rings may come from any thread; each waiter is an :class:`asyncio.Event` on its own loop.
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


def _matches(pattern: str, topic: object) -> bool:
    """``matches`` for SQL: a row another program wrote may hold a topic that is not text (a
    blob, a number); it is read as text, so one odd row never fails the whole query."""
    if isinstance(topic, bytes):
        topic = topic.decode(errors="replace")
    return matches(pattern, topic if isinstance(topic, str) else str(topic))
