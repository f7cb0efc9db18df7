"""A small web service on tidings: ``POST /signups`` publishes UserSignedUp, and the signup's
audit log handles it in the same process, in its own consumer group.

Run it with ``uvicorn examples.fastapi_app:app`` (in memory), or on a broker with
``TIDINGS_URL=nats://127.0.0.1:4222``; ``GET /healthz`` and ``GET /readyz`` are its probes.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime

from fastapi import FastAPI
from pydantic import BaseModel

import tidings
from tidings.examples.signup import AUDIT_GROUP, AuditLog, UserSignedUp
from tidings.integrations.fastapi import BusDep, readiness_router, tidings_lifespan

__all__ = ["SignUp", "Signed", "app", "audit", "bus"]

bus = tidings.Bus(os.environ.get("TIDINGS_URL"))
audit = AuditLog()
bus.subscribe(UserSignedUp, audit.record, group=AUDIT_GROUP)

app = FastAPI(title="signups", lifespan=tidings_lifespan(bus))
app.include_router(readiness_router())

_user_ids = itertools.count(1)


class SignUp(BaseModel):
    email: str
    name: str


class Signed(BaseModel):
    user_id: int
    message_id: str


@app.post("/signups", status_code=202)
async def sign_up(form: SignUp, bus: BusDep) -> Signed:
    """Publish the signup; 202: the handlers run after the answer, not before it."""
    user_id = next(_user_ids)
    event = UserSignedUp(user_id, form.email, form.name, datetime.now(UTC))
    message = await bus.publish(event, key=str(user_id))
    return Signed(user_id=user_id, message_id=message.id)
