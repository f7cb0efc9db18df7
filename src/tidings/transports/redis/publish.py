"""Publishing to Redis: a whole batch added to a topic's streams by one Lua script call.

A keyed message goes to the stream of its key's partition, one without a key to the topic's own
stream (see :mod:`.wire`). The script adds every entry of its slice to its stream, in order, and
the topic to the topic set, in one command: one reply for the batch instead of one per message.
A script blocks Redis while it runs, so a batch goes in slices of :data:`CHUNK` messages. A
slice is retried while the connection is lost, so a slice whose reply (not its write) was lost is
stored twice: handlers deduplicate by message id.

One message to a topic this transport already put in the topic set is one plain ``XADD``, as
fast as the client alone: a script call costs Redis more. What it remembers is forgotten when
it connects again (Redis may have restarted empty), so the next publish adds the topic again.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from redis.asyncio import Redis

from tidings.message import Message
from tidings.transports.kit.partitions import partition_of
from tidings.transports.redis.wire import Keys, Retrying, Script, command, pack_entries

__all__ = ["CHUNK", "PUBLISH", "append"]

PUBLISH = Script("""
redis.call('SADD', KEYS[1], ARGV[1])
local trim = ARGV[2]
local i, last = 3, #ARGV
while i <= last do
  local stream, n = KEYS[tonumber(ARGV[i]) + 1], tonumber(ARGV[i + 1])
  if trim == '' then
    redis.call('XADD', stream, '*', unpack(ARGV, i + 2, i + n + 1))
  else
    redis.call('XADD', stream, 'MAXLEN', '~', trim, '*', unpack(ARGV, i + 2, i + n + 1))
  end
  i = i + n + 2
end
return 0
""")
"""KEYS: the topic set, then the streams. ARGV: topic, MAXLEN ('' for none), then the entries
as :func:`~tidings.transports.redis.wire.pack_entries` lays them out, each slot a position in
the streams (1 for the first)."""

CHUNK = 1000
"""Messages per script run."""


async def append(
    retrying: Retrying,
    keys: Keys,
    maxlen: int | None,
    partitions: int,
    topic: str,
    messages: Sequence[Message],
    registered: set[str],
) -> None:
    """Append ``messages`` to ``topic``'s streams in order, each keyed one to its key's partition
    among ``partitions`` (each stream trimmed to about ``maxlen`` entries); returns once Redis
    has them. ``registered``: the topics known to be in the topic set (updated here). Raises
    TypeError for data that is not bytes, and what ``retrying`` raises."""
    trim = "" if maxlen is None else maxlen
    doing = f"publishing to {topic!r}"
    if len(messages) == 1:
        await retrying(partial(_add, keys, trim, partitions, topic, messages, registered), doing)
        return
    for start in range(0, len(messages), CHUNK):
        chunk = messages[start : start + CHUNK]
        streams: dict[str, int] = {}  # stream -> slot
        slots = []
        for message in chunk:
            stream = _stream(keys, topic, message.key, partitions)
            slots.append(streams.setdefault(stream, len(streams) + 1))
        args = [topic, trim, *pack_entries(chunk, slots)]
        await retrying(partial(PUBLISH.run, keys=(keys.topics, *streams), args=args), doing)
    registered.add(topic)


async def _add(
    keys: Keys,
    trim: int | str,
    partitions: int,
    topic: str,
    one: Sequence[Message],
    registered: set[str],
    client: Redis,
) -> None:
    """One message: a plain XADD once its topic is registered, the script until then. A new
    connection forgets the registrations, also one made for this XADD: then the topic is
    registered again after it."""
    stream = _stream(keys, topic, one[0].key, partitions)
    entry = pack_entries(one, [1])
    if topic in registered:
        trimming = () if trim == "" else ("MAXLEN", "~", trim)
        await command(client, "XADD", stream, *trimming, "*", *entry[2:])
        if topic in registered:
            return
        await command(client, "SADD", keys.topics, topic)
    else:
        await PUBLISH.run(client, keys=(keys.topics, stream), args=[topic, trim, *entry])
    registered.add(topic)


def _stream(keys: Keys, topic: str, key: str | None, partitions: int) -> str:
    """The stream of a message: its key's partition, or the topic's own without a key."""
    return (
        keys.stream(topic) if key is None else keys.partition(topic, partition_of(key, partitions))
    )
