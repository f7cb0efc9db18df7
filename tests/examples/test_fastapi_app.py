"""examples/fastapi_app.py: a signup posted over HTTP is published and audited in the same
process; the probes answer."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from examples import fastapi_app


async def test_a_posted_signup_is_published_and_audited_in_the_same_process() -> None:
    async with LifespanManager(fastapi_app.app) as running:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
            await fastapi_app.bus.drain()
            ready = await client.get("/readyz")

    assert answer.status_code == 202
    (entry,) = fastapi_app.audit.entries.values()
    assert (entry.user_id, entry.email) == (answer.json()["user_id"], "ada@example.com")
    assert entry.message_id == answer.json()["message_id"]
    assert ready.status_code == 200
