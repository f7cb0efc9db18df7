"""The names OpenTelemetry knows tidings' brokers and databases by."""

from __future__ import annotations

__all__ = ["db_system_of", "system_of"]

_SYSTEMS = {
    "memory": "tidings",
    "sqlite": "sqlite",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "nats": "nats",
    "kafka": "kafka",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "rabbitmq": "rabbitmq",
    "redis": "redis",
    "rediss": "redis",
}

_DATABASES = {"memory": "memory", "sqlite": "sqlite", "postgres": "postgresql"}


def system_of(url_or_module: str) -> str:
    """``messaging.system`` for a transport URL (its scheme) or a transport's module name."""
    scheme = url_or_module.partition("://")[0].lower()
    if scheme in _SYSTEMS:
        return _SYSTEMS[scheme]
    for part in reversed(url_or_module.split(".")):  # tidings.transports.kafka.transport
        if part in _SYSTEMS:
            return _SYSTEMS[part]
    return "tidings"


def db_system_of(module: str) -> str:
    """``db.system.name`` for an event store backend's module
    (``tidings.eventsourcing.backends.sqlite.store``); ``other_sql`` for one tidings does not
    ship."""
    for part in reversed(module.split(".")):
        if part in _DATABASES:
            return _DATABASES[part]
    return "other_sql"
