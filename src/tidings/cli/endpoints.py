"""The worker's HTTP endpoints for operators (``tidings run APP --http HOST:PORT``).

``GET /healthz``
    200 ``{"alive": true}``: the worker's event loop answers (the handler runs on it, so a
    blocked loop makes the probe time out).
``GET /readyz``
    :func:`tidings.readiness.check`'s report as JSON, with 200 when ready and 503 when not
    (not started yet, a consumer not running, the broker not answering).
``GET /metrics``
    ``prometheus_client``'s default registry in the Prometheus text format: tidings' metrics
    when the meter provider has a ``PrometheusMetricReader`` (see :mod:`.exporting`).

Served by aiohttp on the worker's own loop (``pip install 'tidings[http]'``), from before the bus
starts until after it closed, so that probes see it start and drain. The address is the
operator's choice: nothing stops ``0.0.0.0``, and nothing here is authenticated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import typer

from tidings import readiness
from tidings.bus import Bus

if TYPE_CHECKING:
    from aiohttp.web import Request, Response

__all__ = ["parse_address", "serving"]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9000`` for IPv6) as host and port; port 0 takes a free one.
    Raises typer.BadParameter."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise typer.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint="--http")
    return host, int(port)


@asynccontextmanager
async def serving(bus: Bus, host: str, port: int) -> AsyncIterator[str]:
    """Serve the endpoints for ``bus`` on ``host``:``port`` for the duration of the block; yields
    the URL bound (with the real port). Raises typer.BadParameter without the ``http`` extra,
    OSError when the address cannot be bound."""
    try:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:
        raise typer.BadParameter(
            "the endpoints need aiohttp and prometheus_client: pip install 'tidings[http]'",
            param_hint="--http",
        ) from None

    async def healthz(request: Request) -> Response:
        return web.json_response({"alive": True})

    async def readyz(request: Request) -> Response:
        report = await readiness.check(bus)
        return web.json_response(report.as_json(), status=report.status)

    async def metrics(request: Request) -> Response:
        # Collecting runs the gauges' callbacks, which read the bus: on its loop, not a thread.
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        await runner.cleanup()
