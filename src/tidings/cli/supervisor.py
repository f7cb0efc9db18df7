"""``tidings run APP --workers N``: N worker processes of one application, kept running.

The supervisor starts N ``tidings run APP`` processes, numbered 1 to N in the
``TIDINGS_WORKER_ID`` environment variable (:func:`tidings.worker_id`). Each is a whole worker
(see :mod:`tidings.cli.worker`); on a transport whose features say ``ordered_per_key`` they
share each group's messages and keep every key in order across them.

* A worker that exits while the supervisor is not stopping (a crash, SIGKILL, a consumer that
  gave up) is started again under the same number after a backoff: 0.5 s, doubling up to 30 s,
  back to 0.5 s once it had run for :data:`_STEADY` seconds.
* SIGINT or SIGTERM to the supervisor sends SIGTERM to every worker: each drains and exits. The
  supervisor exits 0 once all of them drained cleanly (status 0), 1 otherwise. A second signal
  is passed on too, which cuts the workers' drains short.
* The workers run in a session of their own, so Ctrl-C in a terminal reaches only the
  supervisor, which passes it on once. They write to the supervisor's stdout and stderr.
* A worker whose supervisor is gone (killed with SIGKILL) drains and exits as on SIGTERM
  (:func:`watch_supervisor`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence

from tidings.middleware.retry import Retry
from tidings.workers import WORKER_ID_ENV

__all__ = ["Supervisor", "watch_supervisor"]

_RESTART = Retry(initial_delay=0.5, multiplier=2.0, max_delay=30.0, jitter=False)
_STEADY = 30.0
"""Seconds a worker runs before its next exit counts as a first failure again."""
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SUPERVISOR_ENV = "TIDINGS_SUPERVISOR_FD"


class Supervisor:
    """Runs ``workers`` processes of ``command`` (argv after the Python interpreter) until a
    signal; ``tell`` reports exits, restarts and the stop. See the module docstring."""

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        tell: Callable[[str], None],
        restart: Retry = _RESTART,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._command = [sys.executable, *command]
        self._workers = workers
        self._tell = tell
        self._restart = restart
        self._stop = asyncio.Event()
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._alive = -1
        """The read end of a pipe whose write end only this process holds: see
        :func:`watch_supervisor`."""

    async def run(self) -> int:
        """Run the workers until SIGINT or SIGTERM and their drains; returns the exit status."""
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal)
        self._alive, holding = os.pipe()
        try:
            statuses = await asyncio.gather(
                *(self._keep(number) for number in range(1, self._workers + 1))
            )
        finally:
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)
            os.close(self._alive)
            os.close(holding)
        return 0 if all(status == 0 for status in statuses) else 1

    def _on_signal(self) -> None:
        if not self._stop.is_set():
            self._tell(f"stopping: each of the {self._workers} workers drains")
        self._stop.set()
        for process in self._running.values():
            process.terminate()

    async def _keep(self, number: int) -> int:
        """Run worker ``number``, starting it again whenever it exits, until the stop; returns
        its last exit status."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            process = await asyncio.create_subprocess_exec(
                *self._command, start_new_session=True, pass_fds=(self._alive,),
                env={**os.environ, WORKER_ID_ENV: str(number), _SUPERVISOR_ENV: str(self._alive)},
            )  # fmt: skip
            self._running[number] = process
            if self._stop.is_set():  # the signal came while it was starting
                process.terminate()
            status = await process.wait()
            del self._running[number]
            if self._stop.is_set():
                return status
            failures = 1 if loop.time() - started >= _STEADY else failures + 1
            delay = self._restart.backoff(failures)
            self._tell(
                f"worker {number} (pid {process.pid}) exited with status {status}; "
                f"starting it again in {delay:g}s"
            )
            try:
                async with asyncio.timeout(delay):
                    await self._stop.wait()
                return status
            except TimeoutError:
                pass


def watch_supervisor() -> None:
    """In a worker a :class:`Supervisor` started (on its running event loop): send this process
    SIGTERM, which drains it, once the supervisor is gone (the pipe it keeps open for its workers
    reaches its end). Does nothing in a worker started otherwise."""
    fd = os.environ.get(_SUPERVISOR_ENV, "")
    if not fd.isdigit():
        return
    loop = asyncio.get_running_loop()

    def gone() -> None:
        loop.remove_reader(int(fd))
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(int(fd), gone)
