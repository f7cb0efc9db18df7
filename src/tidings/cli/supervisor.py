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
* A worker tells its supervisor once its bus started (:func:`tell_supervisor_ready`);
  :meth:`Supervisor.ready` returns once each of them did.

A program may run a supervisor itself (``tidings demo --workers`` does): ``env``, ``pass_fds``
and ``output`` give the workers more environment, inherited file descriptors and a file for
their stdout and stderr; :meth:`Supervisor.stop` does what a signal does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

from tidings.middleware.retry import Retry
from tidings.workers import WORKER_ID_ENV

__all__ = ["Supervisor", "tell_supervisor_ready", "watch_supervisor"]

_RESTART = Retry(initial_delay=0.5, multiplier=2.0, max_delay=30.0, jitter=False)
_STEADY = 30.0
"""Seconds a worker runs before its next exit counts as a first failure again."""
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SUPERVISOR_ENV = "TIDINGS_SUPERVISOR_FD"
_READY_ENV = "TIDINGS_SUPERVISOR_READY_FD"


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
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        output: int | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._command = [sys.executable, *command]
        self._workers = workers
        self._tell = tell
        self._restart = restart
        self._env = dict(env or {})
        self._pass_fds = tuple(pass_fds)
        self._output = output
        self._stop = asyncio.Event()
        self._ready: set[int] = set()
        self._all_ready = asyncio.Event()
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._alive = -1
        """The read end of a pipe whose write end only this process holds: see
        :func:`watch_supervisor`."""
        self._ready_in = self._ready_out = -1
        """The pipe workers write their numbers to once ready."""

    async def run(self) -> int:
        """Run the workers until SIGINT or SIGTERM and their drains; returns the exit status."""
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal)
        self._alive, holding = os.pipe()
        self._ready_in, self._ready_out = os.pipe()
        loop.add_reader(self._ready_in, self._on_ready)
        try:
            statuses = await asyncio.gather(
                *(self._keep(number) for number in range(1, self._workers + 1))
            )
        finally:
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)
            loop.remove_reader(self._ready_in)
            for fd in (self._alive, holding, self._ready_in, self._ready_out):
                os.close(fd)
        return 0 if all(status == 0 for status in statuses) else 1

    async def ready(self) -> None:
        """Return once every worker's bus started (each told so at least once)."""
        await self._all_ready.wait()

    def _on_signal(self) -> None:
        if not self._stop.is_set():
            self._tell(f"stopping: each of the {self._workers} workers drains")
        self.stop()

    def stop(self) -> None:
        """Stop as on SIGTERM: every worker drains; :meth:`run` returns once they exited."""
        self._stop.set()
        for process in self._running.values():
            process.terminate()

    def _on_ready(self) -> None:
        self._ready.update(int(number) for number in os.read(self._ready_in, 512).split())
        if len(self._ready) == self._workers:
            self._all_ready.set()

    async def _keep(self, number: int) -> int:
        """Run worker ``number``, starting it again whenever it exits, until the stop; returns
        its last exit status."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            process = await asyncio.create_subprocess_exec(
                *self._command, start_new_session=True,
                pass_fds=(self._alive, self._ready_out, *self._pass_fds),
                stdout=self._output, stderr=self._output,
                env={**os.environ, **self._env, WORKER_ID_ENV: str(number),
                     _SUPERVISOR_ENV: str(self._alive), _READY_ENV: str(self._ready_out)},
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


def tell_supervisor_ready() -> None:
    """In a worker a :class:`Supervisor` started: tell it this worker's bus started. Does
    nothing in a worker started otherwise."""
    fd, number = os.environ.get(_READY_ENV, ""), os.environ.get(WORKER_ID_ENV, "")
    if fd.isdigit() and number.isdigit():
        os.write(int(fd), f"{number}\n".encode())  # a few bytes: one atomic write
