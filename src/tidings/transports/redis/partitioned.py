"""Partitions on Redis: leases and presence as keys, and the streams a subscription reads.

:class:`RedisLeases` keeps one subscription's partition leases for the kit's
:class:`~tidings.transports.kit.ownership.Ownership`: a lease is ``SET <lease key> <consumer> NX
PX <lease>``, renewed (``PEXPIRE``) only while it still names this consumer, deleted on release
only then too; presence is this consumer in the group's members set, scored by when it ends. Each
operation is one Lua script, so a round is one round trip whatever the partition count.

:class:`StreamSet` is what a subscription reads: the topic streams of its matched topics (for
messages without a key, shared with every subscription of the group) and the partition streams
of the partitions it owns. A partition stream it has just gained is kept out of its reads until
it claimed what the previous owner left pending there, so that comes first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any

from redis.asyncio import Redis

from tidings.transports.kit.errors import ErrorMap
from tidings.transports.redis.wire import Keys, Script, command

__all__ = ["RedisLeases", "StreamSet"]

_ANNOUNCE = Script("""
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZRANGE', KEYS[1], 0, -1)
""")
"""KEYS: the members set. ARGV: the consumer, the lease (ms). The live members, this one too."""

_HOLD = Script("""
local owner, lease, limit, renewing = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local held = {}
for i = 1, renewing do
  if redis.call('GET', KEYS[i]) == owner then
    redis.call('PEXPIRE', KEYS[i], lease)
    held[#held + 1] = i
  end
end
for i = renewing + 1, #KEYS do
  if #held >= limit then break end
  if redis.call('SET', KEYS[i], owner, 'NX', 'PX', lease) then held[#held + 1] = i end
end
return held
""")
"""KEYS: the leases to renew, then those to take. ARGV: the consumer, the lease (ms), how many
to hold at most, how many KEYS are renewed. The positions (from 1) of the KEYS now held."""

_RELEASE = Script("""
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
""")


class RedisLeases:
    """The partition leases and presence of ``consumer``, a subscription of ``group`` on
    ``topic`` (a pattern too), each lasting ``lease`` seconds; see the module docstring."""

    def __init__(
        self,
        connected: Callable[[], Awaitable[Redis]],
        errors: ErrorMap,
        keys: Keys,
        *,
        topic: str,
        group: str,
        consumer: str,
        lease: float,
    ) -> None:
        self._connected = connected
        self._errors = errors
        self._keys, self._topic, self._group = keys, topic, group
        self._members = keys.members(topic, group)
        self._consumer = consumer
        self._lease_ms = max(int(lease * 1000), 1)

    async def announce(self) -> list[str]:
        members = await self._run(_ANNOUNCE, [self._members], self._lease_ms)
        return [member.decode() for member in members]

    async def hold(self, held: Sequence[int], wanted: Sequence[int], limit: int) -> set[int]:
        partitions = [*held, *wanted]
        keys = self._lease_keys(partitions)
        taken = await self._run(_HOLD, keys, self._lease_ms, limit, len(held))
        return {partitions[i - 1] for i in taken}

    async def release(self, partitions: Collection[int]) -> None:
        if partitions:
            await self._run(
                _RELEASE, [self._keys.lease(self._topic, self._group, p) for p in partitions]
            )

    async def leave(self) -> None:
        client = await self._connected()
        with self._errors.mapping("leaving the group's members"):
            await command(client, "ZREM", self._members, self._consumer)

    def _lease_keys(self, partitions: Iterable[int]) -> list[str]:
        return [self._keys.lease(self._topic, self._group, p) for p in partitions]

    async def _run(self, script: Script, keys: Sequence[str], *args: Any) -> Any:
        client = await self._connected()
        with self._errors.mapping("keeping partition leases"):
            return await script.run(client, keys, (self._consumer, *args))


class StreamSet:
    """The streams one subscription reads (see the module docstring), each with its topic."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._topics: dict[bytes, str] = {}  # topic stream -> topic
        self.owned: set[int] = set()
        self.streams: dict[bytes, str] = {}
        """Every stream read or claimed from -> its topic."""
        self.topic_of: dict[bytes, str] = {}
        """Every stream ever read -> its topic (a read may return a stream just disowned)."""
        self.fresh: set[bytes] = set()
        """Partition streams gained and not yet claimed from: kept out of :attr:`tail`."""
        self.tail: tuple[Any, ...] = ()
        """``STREAMS <keys…> <">"…>`` of XREADGROUP."""

    def add_topics(self, topics: dict[bytes, str]) -> dict[bytes, str]:
        """Read these topics (topic stream -> topic) too; the streams added."""
        topics = {stream: t for stream, t in topics.items() if stream not in self._topics}
        self._topics.update(topics)
        added = dict(topics)
        for topic in topics.values():
            added.update(self._named(topic, self.owned))
        self.fresh.update(added.keys() - topics.keys())
        self._update(added, ())
        return added

    def own(self, partitions: set[int]) -> dict[bytes, str]:
        """Read these partitions too (after claiming what is pending there); the streams added."""
        self.owned |= partitions
        added: dict[bytes, str] = {}
        for topic in self._topics.values():
            added.update(self._named(topic, partitions))
        self.fresh.update(added)
        self._update(added, ())
        return added

    def disown(self, partitions: set[int]) -> set[bytes]:
        """Stop reading these partitions; their streams."""
        self.owned -= partitions
        removed = self.partitions(partitions)
        self.fresh -= removed
        self._update({}, removed)
        return removed

    def claimed(self, stream: bytes) -> None:
        """What was pending in ``stream`` is claimed: read it from now on."""
        if stream in self.fresh:
            self.fresh.discard(stream)
            self._update({}, ())

    def partitions(self, partitions: Iterable[int]) -> set[bytes]:
        """The streams of these partitions of every topic read."""
        partitions = list(partitions)
        return {s for topic in self._topics.values() for s in self._named(topic, partitions)}

    def _named(self, topic: str, partitions: Iterable[int]) -> dict[bytes, str]:
        return {self._keys.partition(topic, p).encode(): topic for p in partitions}

    def _update(self, added: dict[bytes, str], removed: Collection[bytes]) -> None:
        self.streams.update(added)
        self.topic_of.update(added)
        for stream in removed:
            self.streams.pop(stream, None)
        read = [s for s in self.streams if s not in self.fresh]
        self.tail = ("STREAMS", *read, *(">",) * len(read))
