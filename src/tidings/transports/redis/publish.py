"""Publishing to Redis: a whole batch added to a topic's stream by one Lua script call.

The script adds every entry of its slice to the stream, and the topic to the topic set, in one
command: one reply for the batch instead of one per message. A script blocks Redis while it runs,
so a batch goes in slices of :data:`CHUNK` messages. A slice is retried while the connection is
lost, so a slice whose reply (not its write) was lost is stored twice: handlers deduplicate by
message id.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from tidings.message import Message
from tidings.transports.redis.wire import Keys, Retrying, Script, pack_entries

__all__ = ["CHUNK", "PUBLISH", "append"]

PUBLISH = Script("""
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
""")
"""KEYS: the topic's stream, the topic set. ARGV: topic, MAXLEN ('' for none), then the entries
as :func:`~tidings.transports.redis.wire.pack_entries` lays them out."""

CHUNK = 1000
"""Messages per script run."""


async def append(
    retrying: Retrying, keys: Keys, maxlen: int | None, topic: str, messages: Sequence[Message]
) -> None:
    """Append ``messages`` to ``topic``'s stream in order (trimmed to about ``maxlen`` entries);
    returns once Redis has them. Raises TypeError for data that is not bytes, and what
    ``retrying`` raises."""
    script_keys = (keys.stream(topic), keys.topics)
    trim = "" if maxlen is None else maxlen
    doing = f"publishing to {topic!r}"
    for start in range(0, len(messages), CHUNK):
        args = [topic, trim, *pack_entries(messages[start : start + CHUNK])]
        await retrying(partial(PUBLISH.run, keys=script_keys, args=args), doing)
