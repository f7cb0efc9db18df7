"""Publishing to Redis: a whole batch added to a topic's streams by one Lua script call.

A keyed message goes to the stream of its key's partition, one without a key to the topic's own
stream (see :mod:`.wire`). The script adds every entry of its slice to its stream, in order, and
the topic to the topic set, in one command: one reply for the batch instead of one per message.
A script blocks Redis while it runs, so a batch goes in slices of :data:`CHUNK` messages. A
slice is retried while the connection is lost, so a slice whose reply (not its write) was lost is
stored twice: handlers deduplicate by message id.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from tidings.message import Message
from tidings.transports.kit.partitions import partition_of
from tidings.transports.redis.wire import Keys, Retrying, Script, pack_entries

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
) -> None:
    """Append ``messages`` to ``topic``'s streams in order, each keyed one to its key's partition
    among ``partitions`` (each stream trimmed to about ``maxlen`` entries); returns once Redis
    has them. Raises TypeError for data that is not bytes, and what ``retrying`` raises."""
    trim = "" if maxlen is None else maxlen
    doing = f"publishing to {topic!r}"
    for start in range(0, len(messages), CHUNK):
        chunk = messages[start : start + CHUNK]
        streams: dict[str, int] = {}  # stream -> slot
        slots = []
        for message in chunk:
            key = message.key
            stream = (
                keys.stream(topic)
                if key is None
                else keys.partition(topic, partition_of(key, partitions))
            )
            slots.append(streams.setdefault(stream, len(streams) + 1))
        args = [topic, trim, *pack_entries(chunk, slots)]
        await retrying(partial(PUBLISH.run, keys=(keys.topics, *streams), args=args), doing)
