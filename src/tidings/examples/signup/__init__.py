"""The user-signup example: one event, three services, one bus.

``UserSignedUp`` is published once per new user. Three services react to it independently, each in
its own consumer group: the email service sends a welcome mail (slow, sometimes failing), the audit
log records the signup, and the preferences service stores default settings in SQLite.
``tidings demo`` runs this flow with 1,000 signups; ``tidings run
tidings.examples.signup.app:create_bus`` runs it as a worker.
"""

from .app import (
    AUDIT_GROUP,
    EMAIL_GROUP,
    EMAIL_RETRY,
    PREFERENCES_GROUP,
    SignupApp,
    build,
    create_bus,
)
from .events import UserSignedUp, sample_signups
from .services import (
    AuditEntry,
    AuditLog,
    EmailService,
    InvalidAddress,
    MailServerBusy,
    Preferences,
)

__all__ = [
    "AUDIT_GROUP",
    "EMAIL_GROUP",
    "EMAIL_RETRY",
    "PREFERENCES_GROUP",
    "AuditEntry",
    "AuditLog",
    "EmailService",
    "InvalidAddress",
    "MailServerBusy",
    "Preferences",
    "SignupApp",
    "UserSignedUp",
    "build",
    "create_bus",
    "sample_signups",
]
