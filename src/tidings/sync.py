"""A synchronous facade for code that is not async (scripts, WSGI apps, threads).

The bus runs on its own event loop in a background thread; each call hands a coroutine to that
loop and blocks until it finishes. It wraps the async core and adds no behaviour of its own::

    with tidings.sync.SyncBus(bus) as sync_bus:
        sync_bus.publish(UserSignedUp(...))
        result = sync_bus.publish_and_wait(UserSignedUp(...))

Calling it from a thread whose event loop is running raises SyncInAsyncError: blocking there
would stall that loop; ``await`` the Bus's own methods instead.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from tidings.bus import Bus
from tidings.errors import ClosedError, SyncInAsyncError

__all__ = ["SyncBus"]

T = TypeVar("T")
P = ParamSpec("P")


def _blocking(
    method: Callable[Concatenate[Bus, P], Coroutine[Any, Any, T]], doc: str
) -> Callable[Concatenate[SyncBus, P], T]:
    """The bus's async ``method`` as a SyncBus method that blocks until it returns. It takes
    ``method``'s own arguments (type checkers see them), so the facade repeats no signature."""

    @functools.wraps(method)
    def blocking(self: SyncBus, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(method(self.bus, *args, **kwargs))

    blocking.__doc__ = doc
    return blocking


class SyncBus:
    """Runs ``bus`` on a background event loop for as long as the ``with`` block lasts."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncBus:
        _refuse_inside_a_loop()
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="tidings sync bus", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        self._call(self.bus.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drain and close the bus, then stop the background loop. Idempotent."""
        if self._loop is None or self._thread is None:
            return
        try:
            self._call(self.bus.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop = None
            self._thread = None

    publish = _blocking(Bus.publish, "``Bus.publish``, blocking until the message is accepted.")
    publish_and_wait = _blocking(
        Bus.publish_and_wait, "``Bus.publish_and_wait``, blocking until every handler finished."
    )
    drain = _blocking(Bus.drain, "Block until every message published so far was handled.")

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise ClosedError("the SyncBus is not open: use it in a `with` block")
        try:
            _refuse_inside_a_loop()
        except SyncInAsyncError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


def _refuse_inside_a_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise SyncInAsyncError(
        "the synchronous facade was called from inside a running event loop; "
        "await the Bus's own methods there instead"
    )
