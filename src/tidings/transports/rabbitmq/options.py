"""The RabbitMQ transport's settings, and reading them from an ``amqp://`` URL."""

from __future__ import annotations

from dataclasses import dataclass, fields
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from tidings.transports.kit.options import query_options, redacted_repr
from tidings.transports.kit.partitions import DEFAULT_PARTITIONS, check_partitions
from tidings.transports.rabbitmq.wire import is_plain
from tidings.urls import redact

__all__ = ["RabbitMQOptions"]

_MANAGEMENT_PORTS = {"amqp": ("http", 15672), "amqps": ("https", 15671)}


@dataclass(frozen=True, slots=True)
class RabbitMQOptions:
    """Settings of the RabbitMQ transport. The fields below can be given as URL query parameters;
    every other parameter (``heartbeat``, ``name``, ``cafile``, ``certfile``, ``keyfile``,
    ``no_verify_ssl``, ...) is passed on to aio-pika. ``amqps://`` connects with TLS."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """The broker URL as aio-pika takes it (credentials, virtual host, client options)."""
    exchange: str = "tidings"
    """The topic exchange; also the prefix of every queue this transport declares."""
    reconnect_interval: float = 1.0
    """Seconds between reconnection attempts after the connection was lost."""
    reconnect_timeout: float = 30.0
    """Seconds a publish (or a dead-letter operation) waits for a lost connection to come back
    before raising ServiceUnavailable."""
    connect_timeout: float = 10.0
    """Seconds the first connection attempt may take."""
    partitions: int = DEFAULT_PARTITIONS
    """Partitions per topic for keyed messages (see :mod:`tidings.transports.kit.partitions`):
    at most this many subscriptions of a group share a topic's keyed messages. Every process
    publishing to or consuming a topic must use the same number."""
    lease: float = 5.0
    """Seconds a subscription counts as a member of its group after it last announced itself
    (it does so every ``min(lease / 3, 1)`` seconds). A worker that dies frees its partitions at
    once, but the others take them over only once they stop counting it: within this time."""
    management_url: str | None = None
    """The management HTTP API that ``groups()`` asks (AMQP cannot list queues). By default
    ``http://<host>:15672/`` (``https://<host>:15671/`` for ``amqps://``) with the broker URL's
    credentials; credentials given here take precedence."""

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __post_init__(self) -> None:
        check_partitions("amqp", self.partitions)

    @classmethod
    def from_url(cls, url: str) -> RabbitMQOptions:
        """Split ``amqp://…?exchange=orders&reconnect_timeout=60`` into options and the URL
        aio-pika gets. Raises ValueError for another scheme or a bad value."""
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"expected an amqp:// or amqps:// URL, got {redact(url)!r}")
        ours = {f.name for f in fields(cls)} - {"url"}
        query = parse_qsl(parts.query, keep_blank_values=True)
        values = query_options(
            cls,
            urlencode([(name, value) for name, value in query if name in ours]),
            scheme="amqp",
            exclude={"url"},
        )
        for name, value in values.items():
            if isinstance(value, float) and value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        rest = [(name, value) for name, value in query if name not in ours]
        options = cls(parts._replace(query=urlencode(rest)).geturl(), **values)  # type: ignore[arg-type]
        name = options.exchange
        if not is_plain(name) or not 0 < len(name) <= 200 or name.startswith("amq."):
            raise ValueError(f"exchange name {name!r} is empty, reserved, too long or not plain")
        return options

    def management(self) -> tuple[str, str, str, str]:
        """The management API's base URL (ending in ``/api/``), the user and password to give
        it, and the virtual host (``/`` unless the broker URL names another)."""
        broker = urlsplit(self.url)
        vhost = unquote(broker.path[1:]) if len(broker.path) > 1 else "/"
        user = unquote(broker.username or "guest")
        password = unquote(broker.password or "guest")
        if self.management_url is None:
            scheme, port = _MANAGEMENT_PORTS.get(broker.scheme, ("http", 15672))
            base = f"{scheme}://{broker.hostname or 'localhost'}:{port}/"
        else:
            given = urlsplit(self.management_url)
            if given.username is not None:
                user, password = unquote(given.username), unquote(given.password or "")
            host = given.hostname or "localhost"
            netloc = f"{host}:{given.port}" if given.port else host
            base = urlunsplit((given.scheme, netloc, given.path.rstrip("/") + "/", "", ""))
        return base + "api/", user, password, vhost
