"""How tidings lays messages out on Redis, and the one client every Redis module uses.

Keys (``prefix`` defaults to ``tidings``)::

    <prefix>:topic:<topic>          a stream per topic; its consumer groups are tidings' groups
    <prefix>:topics                 a set of every topic published to (wildcard subscriptions
                                    look for matching topics here; Redis has no stream patterns)
    <prefix>:dead-letters           a stream of dead letters
    <prefix>:dead-letters:index     a hash: dead letter id -> stream entry id

A message is one stream entry with the fields ``id``, ``type``, ``time`` (seconds since the
epoch), ``data`` (the payload bytes) and, when present, ``key`` and ``headers`` (the user's
headers as a JSON object). Entries other producers add are delivered too: without ``type`` the
topic is the type, other fields become headers.

Publishing runs a Lua script that adds a whole batch to the stream and the topic to the topic set
in one command: one reply for the batch instead of one per message. Commands are serialised with
hiredis's C encoder (:class:`PackedConnection`), several times faster than redis-py's own, which
would otherwise be most of the cost of a large publish.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import hiredis
import msgspec
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from tidings.errors import ServiceUnavailable, TransportError
from tidings.message import Message
from tidings.transports.kit.tls import wants_tls
from tidings.transports.kit.wire import from_wire

if TYPE_CHECKING:
    from tidings.transports.redis import RedisOptions

__all__ = [
    "LOST",
    "MAX_BLOCK",
    "PUBLISH_SCRIPT",
    "Keys",
    "PackedConnection",
    "PackedSSLConnection",
    "command",
    "connect",
    "decode",
    "evaluate",
    "mapped",
    "publish_args",
    "retrying",
    "sha1",
    "stream_gone",
]

logger = logging.getLogger("tidings.transports.redis")

T = TypeVar("T")

LOST = (RedisConnectionError, RedisTimeoutError, OSError)
"""Client errors that mean the connection is gone: worth a retry once Redis is back."""

MAX_BLOCK = 2.0
"""Seconds one XREADGROUP may wait on the server for new entries."""

PUBLISH_SCRIPT = """
redis.call('SADD', KEYS[2], ARGV[1])
local trim = ARGV[2]
local i, last = 3, #ARGV
while i <= last do
  local n = tonumber(ARGV[i])
  if trim == '' then
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + n))
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', trim, '*', unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
return 0
"""
"""KEYS: the topic's stream, the topic set. ARGV: topic, MAXLEN ('' for none), then for each
message the number of field arguments followed by the fields and values."""

_encode_headers = msgspec.json.Encoder().encode
_BYTES = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis key names under one prefix (see the module docstring)."""

    prefix: str

    def stream(self, topic: str) -> str:
        return f"{self.prefix}:topic:{topic}"

    @property
    def topics(self) -> str:
        return f"{self.prefix}:topics"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead-letters"

    @property
    def dead_letter_index(self) -> str:
        return f"{self.prefix}:dead-letters:index"


def publish_args(topic: str, maxlen: int | None, messages: Sequence[Message]) -> list[EncodableT]:
    """The ARGV of :data:`PUBLISH_SCRIPT` adding ``messages`` to ``topic``.

    Raises TypeError for a message whose data is not bytes.
    """
    args: list[EncodableT] = [topic, "" if maxlen is None else maxlen]
    extend = args.extend
    for message in messages:
        data = message.data
        if type(data) is not bytes and not isinstance(data, _BYTES):
            raise TypeError(f"message data must be bytes at a transport, not {type(data).__name__}")
        key, headers = message.key, message.headers
        extend((8, b"id", message.id, b"type", message.type))
        extend((b"time", repr(message.timestamp), b"data", data))
        if key is not None or headers:
            start = len(args) - 9
            if key is not None:
                extend((b"key", key))
            if headers:
                extend((b"headers", _encode_headers(dict(headers))))
            args[start] = len(args) - start - 1
    return args


def decode(topic: str, fields: list[bytes]) -> Message:
    """The message stored as a stream entry's ``fields`` (flat name, value pairs), through
    :func:`~tidings.transports.kit.wire.from_wire`: fields of other producers become headers, and
    garbage in tidings' own fields falls back instead of raising."""
    if len(fields) == 8 and fields[0:7:2] == [b"id", b"type", b"time", b"data"]:
        # the layout publish_args writes for a message without key and headers
        return from_wire(topic, fields[7], None, ident=fields[1], kind=fields[3], stamp=fields[5])[
            0
        ]
    it = iter(fields)
    values: dict[Any, Any] = dict(zip(it, it, strict=False))
    pop = values.pop
    data, headers = pop(b"data", b""), pop(b"headers", None)
    ident, kind, stamp, key = (
        pop(b"id", None),
        pop(b"type", None),
        pop(b"time", None),
        pop(b"key", None),
    )
    # What is left are other producers' fields: headers.
    return from_wire(
        topic, data, values, ident=ident, kind=kind, stamp=stamp, key=key, json_headers=headers
    )[0]


class _HiredisPacking:
    """Serialises commands with hiredis (C) instead of redis-py's pure-Python packer."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:  # "CLIENT SETINFO" and the like
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # stub says 1-tuple


class PackedConnection(_HiredisPacking, Connection):
    """A redis.asyncio connection whose commands are packed by hiredis."""


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    """The TLS variant of :class:`PackedConnection`."""


def connect(options: RedisOptions) -> Redis:
    """A client for ``options`` (no I/O yet). Its replies are left unparsed (lists of bytes);
    redis-py's own retries are off: callers retry by :func:`retrying`, with one policy."""
    settings: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "db": options.db,
        "username": options.username,
        "password": options.password,
        "socket_connect_timeout": options.timeout,
        "socket_timeout": options.timeout + MAX_BLOCK,
        "socket_keepalive": True,
        "protocol": 2,  # the reply shapes parsed here; also what redis-py < 8 speaks
        "retry": Retry(NoBackoff(), 0),
        "connection_class": PackedConnection,
        "client_name": f"tidings:{options.consumer}",
    }
    if wants_tls(options.tls, options.tls_ca, options.tls_cert):
        # redis-py builds its SSLContext itself, from these files
        settings["connection_class"] = PackedSSLConnection
        settings["ssl_ca_certs"] = options.tls_ca
        settings["ssl_certfile"] = options.tls_cert
        settings["ssl_keyfile"] = options.tls_key
    client = Redis.from_pool(ConnectionPool(**settings))
    client.response_callbacks.clear()  # every reply raw: the modules parse what they use
    return client


async def command(client: Redis, *args: EncodableT) -> Any:
    """Run one command; its reply unparsed."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


async def evaluate(
    client: Redis, script: str, sha: str, keys: Sequence[str], args: Sequence[EncodableT]
) -> Any:
    """Run ``script`` by its ``sha``; loads it first when Redis does not know it (after a
    restart the script cache is empty)."""
    try:
        return await command(client, "EVALSHA", sha, len(keys), *keys, *args)
    except NoScriptError:
        return await command(client, "EVAL", script, len(keys), *keys, *args)


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def stream_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the stream or its group is gone (deleted, or Redis restarted without
    its data): NOGROUP, or a blocked read ended because its key was deleted."""
    return isinstance(exc, ResponseError) and str(exc).startswith(("NOGROUP", "UNBLOCKED"))


def mapped(exc: BaseException, where: str, doing: str) -> TransportError:
    """The tidings error for a client error raised while ``doing`` against ``where``."""
    if isinstance(exc, LOST):
        return ServiceUnavailable(f"Redis is not reachable at {where} ({doing}): {exc}")
    return TransportError(f"Redis failed {doing} at {where}: {exc}")


async def retrying(
    operation: Callable[[], Awaitable[T]], *, window: float, where: str, doing: str
) -> T:
    """``operation()``, tried again while the connection is lost, for up to ``window`` seconds
    (Redis restarting); then ServiceUnavailable. Other client errors become TransportError."""
    deadline = time.monotonic() + window
    pause = 0.0
    while True:
        try:
            return await operation()
        except LOST as exc:
            if time.monotonic() + pause > deadline:
                raise mapped(exc, where, doing) from exc
            logger.debug("Redis connection lost while %s; trying again: %s", doing, exc)
        except RedisError as exc:
            raise mapped(exc, where, doing) from exc
        await asyncio.sleep(pause)  # back off while Redis comes back
        pause = min(max(pause * 2, 0.05), 1.0)
