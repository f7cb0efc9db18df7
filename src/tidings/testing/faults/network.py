"""A loopback TCP proxy that can cut the network between a client and a broker, for outage tests.

Point a transport's URL at the proxy instead of the broker (:meth:`TcpProxy.redirect`), and a
test can take the broker away from that one client without stopping the broker, which others
may share::

    async with TcpProxy("127.0.0.1", 6379) as proxy:
        bus = Bus(proxy.redirect("redis://127.0.0.1:6379/0"))
        ...
        await proxy.cut()      # every connection closed; new ones are reset at once
        ...
        await proxy.restore()  # connections go through again

``cut(hold=True)`` keeps new connections open and silent instead (a network that drops
packets): a client then learns of the outage only from its own timeouts. Such held connections
go through once the link is restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from urllib.parse import urlsplit, urlunsplit

from tidings.resource import Resource

__all__ = ["TcpProxy"]

_CHUNK = 65536


class TcpProxy(Resource):
    """Forwards connections made to ``127.0.0.1:port`` (a free port, chosen by :meth:`start`)
    to ``host``:``upstream_port``, byte for byte in both directions, until cut.

    Not thread-safe: use it on one event loop. ``start`` binds the port; ``aclose`` closes it and
    every connection.
    """

    def __init__(self, host: str, upstream_port: int) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._hold = False
        self._open.set()

    @property
    def port(self) -> int:
        """The port clients connect to; raises RuntimeError before :meth:`start`."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, for clients that take ``host:port``."""
        return f"127.0.0.1:{self.port}"

    def redirect(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (user, path and query kept)."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@{self.address}" if user else self.address
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def cut(self, *, hold: bool = False) -> None:
        """Close every connection through the proxy; until :meth:`restore`, reset each new
        connection at once, or with ``hold`` accept it and leave it unanswered."""
        self._open.clear()
        self._hold = hold
        await self._drop_links()

    async def restore(self) -> None:
        """Let connections through again, the held ones included."""
        self._open.set()

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._drop_links()
        if server is not None:
            await server.wait_closed()

    async def _drop_links(self) -> None:
        links = set(self._links)
        for link in links:
            link.cancel()
        await asyncio.gather(*links, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open.is_set() and not self._hold:
            _reset(writer)
            return
        link = asyncio.current_task()
        assert link is not None
        self._links.add(link)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            pass  # cut: ending normally keeps asyncio's stream callback from logging the cancel
        finally:
            self._links.discard(link)
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Once the link is open, pump bytes both ways until either side ends."""
        await self._open.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.host, self.upstream_port
            )
            try:
                async with asyncio.TaskGroup() as pumps:
                    pumps.create_task(_pump(reader, upstream_writer))
                    pumps.create_task(_pump(upstream_reader, writer))
            finally:
                upstream_writer.transport.abort()
        except* OSError:
            pass  # either side went away: the link ends, the client sees its connection closed


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy ``source`` to ``sink`` until end of file, then end ``sink``'s side too."""
    while data := await source.read(_CHUNK):
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof():
        sink.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a host with nothing listening on the port answers."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
