"""How tidings lays messages out on Redis, and how its commands travel there.

Keys (``prefix`` defaults to ``tidings``)::

    <prefix>:topic:<topic>          a stream per topic for messages without a key; its consumer
                                    groups are tidings' groups
    <prefix>:topic:<topic>#<n>      a stream per partition ``n`` of the topic, for keyed messages
    <prefix>:lease:<topic> <group>#<n>  the subscription owning partition ``n`` (with a TTL)
    <prefix>:members:<topic> <group>    a sorted set: the live subscriptions, scored by when
                                    their presence ends (``<topic>`` as subscribed: a pattern
                                    too)
    <prefix>:topics                 a set of every topic published to (wildcard subscriptions
                                    look for matching topics here; Redis has no stream patterns)
    <prefix>:dead-letters           a stream of dead letters
    <prefix>:dead-letters:index     a hash: dead letter id -> stream entry id

A message is one stream entry with the fields ``id``, ``type``, ``time`` (seconds since the
epoch), ``data`` (the payload bytes) and, when present, ``key`` and ``headers`` (the user's
headers as a JSON object). Entries other producers add are delivered too: without ``type`` the
topic is the type, other fields become headers.

Commands are serialised with hiredis's C encoder (:class:`PackedConnection`), several times faster
than redis-py's own, which would otherwise be most of the cost of a large publish; replies are
left unparsed (lists of bytes) and read by the modules that use them. Lua scripts run by their
SHA1 (:class:`Script`). Operations that must outlast a Redis restart run through the transport's
:class:`Retrying`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import hiredis
import msgspec
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import NoScriptError, ResponseError
from redis.typing import EncodableT

from tidings.message import Message
from tidings.transports.kit.partitions import partition_name
from tidings.transports.kit.wire import from_wire

__all__ = [
    "Keys",
    "PackedConnection",
    "PackedSSLConnection",
    "Retrying",
    "Script",
    "command",
    "decode",
    "pack_entries",
    "stream_gone",
]

T = TypeVar("T")

_encode_headers = msgspec.json.Encoder().encode
_BYTES = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis key names under one prefix (see the module docstring)."""

    prefix: str

    def stream(self, topic: str) -> str:
        return f"{self.prefix}:topic:{topic}"

    def partition(self, topic: str, partition: int) -> str:
        return partition_name(self.stream(topic), partition)

    def lease(self, topic: str, group: str, partition: int) -> str:
        return partition_name(f"{self.prefix}:lease:{topic} {group}", partition)

    def members(self, topic: str, group: str) -> str:
        return f"{self.prefix}:members:{topic} {group}"

    @property
    def topics(self) -> str:
        return f"{self.prefix}:topics"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead-letters"

    @property
    def dead_letter_index(self) -> str:
        return f"{self.prefix}:dead-letters:index"


def pack_entries(messages: Sequence[Message], slots: Sequence[int]) -> list[EncodableT]:
    """``messages`` as stream entries, one after the other: for each, its slot (the same
    position in ``slots``: which of the script's streams it goes to), the number of field
    arguments, then the fields and values (what a script adding them reads).

    Raises TypeError for a message whose data is not bytes.
    """
    args: list[EncodableT] = []
    extend = args.extend
    for message, slot in zip(messages, slots, strict=True):
        data = message.data
        if type(data) is not bytes and not isinstance(data, _BYTES):
            raise TypeError(f"message data must be bytes at a transport, not {type(data).__name__}")
        key, headers = message.key, message.headers
        extend((slot, 8, b"id", message.id, b"type", message.type))
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
        # the layout pack_entries writes for a message without key and headers
        message, _ = from_wire(
            topic, fields[7], None, ident=fields[1], kind=fields[3], stamp=fields[5]
        )
        return message
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
    message, _ = from_wire(
        topic, data, values, ident=ident, kind=kind, stamp=stamp, key=key, json_headers=headers
    )
    return message


def stream_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the stream or its group is gone (deleted, or Redis restarted without
    its data): NOGROUP, or a blocked read ended because its key was deleted."""
    return isinstance(exc, ResponseError) and str(exc).startswith(("NOGROUP", "UNBLOCKED"))


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


async def command(client: Redis, *args: EncodableT) -> Any:
    """Run one command; its reply unparsed."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, run by its SHA1 and loaded first when Redis does not know it (after a
    restart the script cache is empty)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", sha)

    async def run(self, client: Redis, keys: Sequence[str], args: Sequence[EncodableT] = ()) -> Any:
        """The script's reply (unparsed) for ``keys`` and ``args``."""
        try:
            return await command(client, "EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await command(client, "EVAL", self.source, len(keys), *keys, *args)


class Retrying(Protocol):
    """``operation(client)`` with the transport's client, tried again while the connection is lost
    (Redis restarting) for up to the transport's ``reconnect`` seconds, then ServiceUnavailable;
    other client errors become TransportError. ``doing`` says what for, in those errors."""

    def __call__(self, operation: Callable[[Redis], Awaitable[T]], doing: str) -> Awaitable[T]: ...
