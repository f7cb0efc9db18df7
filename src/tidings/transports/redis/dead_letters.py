"""Dead letters on Redis: a stream of letters, plus a hash from letter id to stream entry id.

Each letter is one entry of ``<prefix>:dead-letters`` with the fields ``id``, ``topic`` and
``letter`` (the :class:`~tidings.dead_letters.DeadLetter` as JSON); ``<prefix>:dead-letters:index``
maps letter ids to entry ids, so ``get`` and ``remove`` need no scan. Adding and removing are Lua
scripts: the stream and the index change together or not at all. The stream keeps insertion
order, so ``list`` returns the oldest first. Letters are as durable as the server (see
:mod:`tidings.transports.redis.transport`).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

from tidings.dead_letters import PAGE_SIZE, DeadLetter, decode_letter
from tidings.errors import NotFound
from tidings.transports.redis.wire import Keys, Retrying, Script, command

__all__ = ["RedisDeadLetterStore"]

_ADD = Script("""
local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'topic', ARGV[2], 'letter', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], entry)
return entry
""")
_REMOVE = Script("""
local removed = 0
for _, id in ipairs(ARGV) do
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    removed = removed + redis.call('XDEL', KEYS[1], entry)
    redis.call('HDEL', KEYS[2], id)
  end
end
return removed
""")
_PAGE = 500

_encode = msgspec.json.Encoder().encode


class RedisDeadLetterStore:
    """The dead letters of one Redis transport (same server, same key prefix).

    Every method is safe to call concurrently; each retries a lost connection for the
    transport's ``reconnect`` seconds (``retrying``), then raises ServiceUnavailable.
    """

    def __init__(self, retrying: Retrying, keys: Keys) -> None:
        self._retrying = retrying
        self._keys = (keys.dead_letters, keys.dead_letter_index)
        self._name = f"Redis dead letters {keys.dead_letters!r}"

    async def add(self, letter: DeadLetter) -> None:
        """Store ``letter``; it is on Redis when this returns."""
        args = (letter.id, letter.topic, _encode(letter))
        await self._retrying(
            lambda client: _ADD.run(client, self._keys, args), "adding dead letters"
        )

    async def list(
        self, *, topic: str | None = None, limit: int = PAGE_SIZE, after: str | None = None
    ) -> builtins.list[DeadLetter]:
        """Up to ``limit`` letters (of ``topic`` when given), oldest first; from the stream
        entry after the letter ``after`` when given."""
        wanted = topic.encode() if topic is not None else None
        found: builtins.list[DeadLetter] = []
        start = "-" if after is None else "(" + await self._entry(after)
        while len(found) < limit:
            page = min(_PAGE, limit - len(found)) if wanted is None else _PAGE

            async def read(client: Redis, start: str = start, page: int = page) -> Any:
                return await command(client, "XRANGE", self._keys[0], start, "+", "COUNT", page)

            entries = await self._retrying(read, "listing dead letters")
            for _, fields in entries:
                values = _fields(fields)
                if wanted is None or values.get(b"topic") == wanted:
                    found.append(self._letter(values))
                    if len(found) == limit:
                        break
            if len(entries) < page:
                break
            start = "(" + entries[-1][0].decode()
        return found

    async def _entry(self, letter_id: str) -> str:
        """The stream entry id of the letter ``letter_id``; raises NotFound."""

        async def read(client: Redis) -> Any:
            return await command(client, "HGET", self._keys[1], letter_id)

        entry = await self._retrying(read, "getting dead letters")
        if entry is None:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def get(self, letter_id: str) -> DeadLetter:
        """The letter with ``letter_id``; raises NotFound."""

        async def read(client: Redis) -> Any:
            entry = await command(client, "HGET", self._keys[1], letter_id)
            if entry is None:
                return []
            return await command(client, "XRANGE", self._keys[0], entry, entry)

        entries = await self._retrying(read, "getting dead letters")
        if not entries:
            raise NotFound(f"no dead letter with id {letter_id!r}")
        return self._letter(_fields(entries[0][1]))

    async def remove(self, letter_ids: Sequence[str]) -> int:
        """Remove these letters; returns how many existed."""
        if not letter_ids:
            return 0
        ids = builtins.list(letter_ids)
        removed = await self._retrying(
            lambda client: _REMOVE.run(client, self._keys, ids), "removing dead letters"
        )
        return int(removed)

    def _letter(self, values: dict[bytes, bytes]) -> DeadLetter:
        letter_id = values.get(b"id", b"?").decode(errors="replace")
        return decode_letter(letter_id, values.get(b"letter", b""), self._name)


def _fields(fields: builtins.list[bytes]) -> dict[bytes, bytes]:
    it = iter(fields)
    return dict(zip(it, it, strict=True))
