"""The consumer groups on Redis: the consumer groups of the topics' streams.

A group of a pattern subscription is a group on each stream it matched, so it is listed (and
dropped) per concrete topic; a topic's group is its group on the topic's stream and on each of
its partition streams, summed. Lag is what Redis counts as not yet delivered to the group
(``XINFO GROUPS`` ``lag``, or the stream's length when Redis cannot tell, as after a trim) plus
what was delivered and not acknowledged (``pending``); the last activity is the most recent
interaction of any of its consumers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from tidings.errors import NotFound
from tidings.transports.base import GroupInfo
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.partitions import merge_groups
from tidings.transports.redis.wire import Keys, command

__all__ = ["drop_group", "forget_consumer", "list_groups"]

_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _fields(reply: list[Any]) -> dict[str, Any]:
    return {name.decode(): value for name, value in zip(reply[::2], reply[1::2], strict=True)}


async def _streams(client: Redis, prefix: str, pattern: str = "*") -> list[bytes]:
    streams: list[bytes] = []
    cursor: Any = 0
    while True:
        cursor, keys = await command(
            client, "SCAN", cursor, "MATCH", prefix.translate(_GLOB) + pattern, "COUNT", 1000,
            "TYPE", "stream",
        )  # fmt: skip
        streams.extend(keys)
        if int(cursor) == 0:
            return sorted(streams)


async def _group(client: Redis, stream: bytes, topic: str, info: dict[str, Any]) -> GroupInfo:
    lag = info.get("lag")
    if lag is None:
        lag = await command(client, "XLEN", stream)
    consumers = await command(client, "XINFO", "CONSUMERS", stream, info["name"])
    idle = [_fields(consumer)["idle"] for consumer in consumers]
    last_active = time.time() - min(idle) / 1000 if idle else None
    return GroupInfo(
        topic, info["name"].decode(), lag + info["pending"], info["pending"], last_active
    )


async def list_groups(client: Redis, keys: Keys, errors: ErrorMap) -> list[GroupInfo]:
    """Every group on every topic's stream under ``keys``, sorted by topic then group."""
    prefix = keys.stream("")
    groups: list[GroupInfo] = []
    with errors.mapping("listing the groups"):
        for stream in await _streams(client, prefix):
            topic = stream.decode()[len(prefix) :]
            if topic != (base := topic.rpartition("#")[0]) and "#" not in base and base:
                topic = base  # a partition's stream (topics hold no "#")
            for reply in await command(client, "XINFO", "GROUPS", stream):
                groups.append(await _group(client, stream, topic, _fields(reply)))
    return merge_groups(groups)


async def drop_group(client: Redis, keys: Keys, errors: ErrorMap, topic: str, group: str) -> None:
    """``XGROUP DESTROY`` the group on ``topic``'s streams; raises NotFound."""
    stream = keys.stream(topic)
    destroyed = 0
    with errors.mapping(f"dropping {group!r}"):
        for name in [stream.encode(), *await _streams(client, stream, "#*")]:
            if await command(client, "EXISTS", name):
                destroyed += await command(client, "XGROUP", "DESTROY", name, group)
    if not destroyed:
        raise NotFound(f"no group {group!r} on {topic!r}")


async def forget_consumer(
    client: Redis, streams: Iterable[bytes], group: str, consumer: str
) -> None:
    """Remove ``consumer`` from ``group`` on each of ``streams`` where it holds nothing."""
    streams = list(streams)
    if not streams:
        return
    async with client.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.execute_command("XPENDING", stream, group, "-", "+", 1, consumer)
        pending = await pipe.execute(raise_on_error=False)
    idle = [s for s, p in zip(streams, pending, strict=True) if p == []]
    if idle:
        async with client.pipeline(transaction=False) as pipe:
            for stream in idle:
                pipe.execute_command("XGROUP", "DELCONSUMER", stream, group, consumer)
            await pipe.execute(raise_on_error=False)
