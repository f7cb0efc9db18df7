"""Redis Streams transport: ``redis://127.0.0.1:6379/0`` (see :mod:`.transport`)."""

from tidings.transports.redis.options import RedisOptions
from tidings.transports.redis.transport import FEATURES, RedisTransport, from_url

__all__ = ["FEATURES", "RedisOptions", "RedisTransport", "from_url"]
