"""Wiring: the three signup services subscribed to one bus, each in a consumer group of its own."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tidings

from .events import UserSignedUp
from .services import AuditLog, EmailService, InvalidAddress, Preferences

__all__ = [
    "AUDIT_GROUP",
    "EMAIL_GROUP",
    "EMAIL_RETRY",
    "PREFERENCES_GROUP",
    "SignupApp",
    "build",
    "create_bus",
]

EMAIL_GROUP = "signup.email"
AUDIT_GROUP = "signup.audit"
PREFERENCES_GROUP = "signup.preferences"

EMAIL_RETRY = tidings.Retry(
    max_attempts=3,
    initial_delay=0.05,
    max_delay=1.0,
    # A bad address stays bad: dead-letter it at once, like undecodable input.
    give_up_on=(InvalidAddress,),
)
"""Up to three attempts, 50 ms then up to 100 ms apart (full jitter); none for a bad address."""


@dataclass(frozen=True, slots=True)
class SignupApp:
    """A bus with the signup services subscribed, and the services (to look at their work)."""

    bus: tidings.Bus
    email: EmailService
    audit: AuditLog
    preferences: Preferences

    async def aclose(self) -> None:
        """Close the bus (draining it), then the preferences database."""
        await self.bus.aclose()
        await self.preferences.aclose()


def build(
    url: str | tidings.Transport | None = None,
    *,
    preferences_db: str | Path,
    dead_letters: tidings.DeadLetterStore | None = None,
    middleware: Sequence[tidings.Middleware] = (),
    telemetry: tidings.Telemetry | None = None,
    email_latency: float = 0.1,
    email_concurrency: int = 200,
) -> SignupApp:
    """The signup flow on the bus for ``url`` (in memory when None), not yet started.

    The email service gets ``email_concurrency`` calls at once: with 100 ms per mail, 200 at once
    send 2,000 mails a second. ``dead_letters`` replaces the transport's dead-letter store;
    ``middleware`` wraps every handler (outermost first); ``telemetry`` names the OpenTelemetry
    providers to report to (the global ones by default).
    """
    bus = tidings.Bus(url, dead_letters=dead_letters, middleware=middleware, telemetry=telemetry)
    email = EmailService(email_latency)
    audit = AuditLog()
    preferences = Preferences(preferences_db)
    bus.subscribe(
        UserSignedUp,
        email.send_welcome,
        group=EMAIL_GROUP,
        concurrency=email_concurrency,
        retry=EMAIL_RETRY,
    )
    bus.subscribe(UserSignedUp, audit.record, group=AUDIT_GROUP)
    bus.subscribe(
        UserSignedUp,
        preferences.create_defaults,
        group=PREFERENCES_GROUP,
        concurrency=8,
        retry=tidings.Retry(max_attempts=5, initial_delay=0.05),
    )
    return SignupApp(bus, email, audit, preferences)


def create_bus() -> tidings.Bus:
    """The bus of a signup worker: ``tidings run tidings.examples.signup.app:create_bus``.

    It runs on ``$TIDINGS_URL`` (default: the SQLite file ``.tidings/signup.db``) and keeps the
    preferences in ``.tidings/preferences.db``.
    """
    Path(".tidings").mkdir(exist_ok=True)
    url = os.environ.get("TIDINGS_URL", "sqlite:///.tidings/signup.db")
    return build(url, preferences_db=".tidings/preferences.db").bus
