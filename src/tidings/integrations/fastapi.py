"""FastAPI and a bus: the bus runs as long as the application, endpoints get it as a dependency.

::

    bus = tidings.Bus("nats://127.0.0.1:4222")
    app = FastAPI(lifespan=tidings_lifespan(bus))
    app.include_router(readiness_router())        # GET /healthz, GET /readyz


    @app.post("/signups")
    async def sign_up(form: SignUp, bus: BusDep) -> None:
        await bus.publish(UserSignedUp(...))

:func:`tidings_lifespan` starts the bus (its consumers, so the handlers run in the web process)
before the first request and closes it after the last: on the way down it drains, as
``Bus.aclose`` does. An application with a lifespan of its own enters this one inside it:
``async with tidings_lifespan(bus)(app): yield``.

The probes: ``/readyz`` answers :func:`tidings.readiness.check` as JSON, with 200 when ready and
503 when not (a consumer not running, the broker not answering). ``/healthz`` is liveness: 200
until a consumer gives up for good, then 503 (``{"live": false, "failed": [routes]}``), the
condition on which ``tidings run`` exits so that a supervisor restarts it; it does not ping the
broker, whose outage a restart would not cure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

try:
    from fastapi import APIRouter, Depends, FastAPI, Request
    from fastapi.responses import JSONResponse
except ImportError as missing:  # the extra was not installed
    raise ImportError(
        "tidings.integrations.fastapi needs: pip install 'tidings[fastapi]'"
    ) from missing

from tidings.bus import Bus
from tidings.readiness import check

__all__ = ["BusDep", "get_bus", "readiness_router", "tidings_lifespan"]

_STATE = "tidings_bus"


def tidings_lifespan(
    bus: Bus, *, drain_timeout: float | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=…)`` that runs ``bus`` while the application serves.

    Starting raises what ``bus.start()`` raises (the server then does not start). On shutdown
    the bus is closed with ``drain_timeout`` (see ``Bus.aclose``: None waits for every accepted
    in-process message; brokers get back what was not handled). The bus is kept in
    ``app.state``, where :func:`get_bus` finds it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setattr(app.state, _STATE, bus)
        await bus.start()
        try:
            yield
        finally:
            await bus.aclose(timeout=drain_timeout)

    return lifespan


def get_bus(request: Request) -> Bus:
    """The application's bus, for ``Depends(get_bus)``; RuntimeError when the application has
    no :func:`tidings_lifespan`."""
    bus = getattr(request.app.state, _STATE, None)
    if not isinstance(bus, Bus):
        raise RuntimeError("no bus: create the app with FastAPI(lifespan=tidings_lifespan(bus))")
    return bus


BusDep = Annotated[Bus, Depends(get_bus)]
"""An endpoint parameter ``bus: BusDep`` receives the application's bus."""


def readiness_router(*, timeout: float = 2.0) -> APIRouter:
    """``GET /healthz`` and ``GET /readyz`` for the application's bus (see the module's
    docstring); ``timeout`` bounds the broker's ping in seconds."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz(bus: BusDep) -> JSONResponse:  # on the loop, where the bus lives
        failed = [route.route for route in bus.health().failed]
        return JSONResponse({"live": not failed, "failed": failed}, 503 if failed else 200)

    @router.get("/readyz")
    async def readyz(bus: BusDep) -> JSONResponse:
        readiness = await check(bus, timeout=timeout)
        return JSONResponse(readiness.as_json(), readiness.status)

    return router
