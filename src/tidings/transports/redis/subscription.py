"""Consumer-group subscriptions on Redis streams, and their deliveries.

A subscription is one consumer (a unique name) of its group on every stream it reads: the topic
streams of one topic or of every topic matching its pattern, and their partition streams of the
partitions it owns (:mod:`.partitioned`, kept by the kit's ownership). Its loop, on a connection
of its own:

* reads new entries with ``XREADGROUP … COUNT <room> BLOCK …`` (room: ``prefetch`` minus the
  deliveries not yet settled), in stream order;
* claims entries that stayed pending longer than the lease (``XAUTOCLAIM``): messages of a
  consumer that died, released by a closed transport, or nacked and now due. It claims when one
  of its own nacks comes due and every quarter lease otherwise; ``attempt`` of a claimed entry is
  Redis's delivery count (``XPENDING``);
* for a pattern, looks for new matching topics every ``discovery`` seconds.

Settling and keeping leases is :mod:`.settlement`'s. A lost connection is retried with backoff,
forever; groups are created again (Redis may have restarted empty). A blocked read is ended early
(``CLIENT UNBLOCK``) when the subscription closes or one of its nacks comes due sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tidings.errors import ClosedError
from tidings.topics import is_pattern, matches
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.ownership import Ownership
from tidings.transports.redis.groups import forget_consumer
from tidings.transports.redis.options import RedisOptions
from tidings.transports.redis.partitioned import RedisLeases, StreamSet
from tidings.transports.redis.settlement import RedisDelivery, Settlement
from tidings.transports.redis.wire import Keys, command, decode, stream_gone

__all__ = ["MAX_BLOCK", "RedisDelivery", "RedisSubscription"]

logger = logging.getLogger("tidings.transports.redis")

MAX_BLOCK = 2.0
"""Seconds one XREADGROUP may wait on the server for new entries."""
_UNBLOCK_TRIES = 20


class RedisSubscription:
    """Batches of deliveries of one topic or pattern for one group; iterate from one task.

    ``connected()`` is the transport's client (ClosedError once it closed), ``errors`` its error
    map; the subscription reads on a connection of its own from the same pool.
    """

    def __init__(
        self,
        topic: str,
        group: str,
        prefetch: int,
        *,
        connected: Callable[[], Awaitable[Redis]],
        options: RedisOptions,
        keys: Keys,
        errors: ErrorMap,
    ) -> None:
        self.topic = topic
        self.group = group
        self.prefetch = prefetch
        self.consumer = f"{options.consumer}-{secrets.token_hex(4)}"
        self._connected = connected
        self._keys = keys
        self._errors = errors
        self._discovery = options.discovery
        self._lease_ms = max(int(options.lease * 1000), 1)
        self._claim_every = min(max(options.lease / 4, 0.05), 5.0)
        self._pattern = is_pattern(topic)
        self._set = StreamSet(keys)
        self._new: dict[bytes, str] = {}  # streams gained, their group not yet created
        self._ignored: set[bytes] = set()  # keys in the topic set that hold no stream
        self._cursors: dict[bytes, bytes] = {}  # XAUTOCLAIM position per stream
        self._reader: Redis | None = None
        self._reader_id: int | None = None
        self._ready = False
        self._claim_at = 0.0  # claim first: what a closed transport released, or a dead one left
        self._discover_at = 0.0
        self._wakes: list[float] = []  # heap: when this subscription's nacks come due
        self._blocked_until: float | None = None
        self._settlement = Settlement(
            connected=connected,
            errors=errors,
            group=group,
            consumer=self.consumer,
            lease=options.lease,
            nacked=self._nacked,
        )
        leases = RedisLeases(
            connected, errors, keys, topic=topic, group=group, consumer=self.consumer,
            lease=options.lease,
        )  # fmt: skip
        self._ownership = Ownership(
            leases, count=options.partitions, lease=options.lease, name=self.consumer,
            start=self._own, stop=self._disown, drained=self._drained,
        )  # fmt: skip
        self._stepping = False
        self._stepped = asyncio.Event()
        self._closing = asyncio.Event()
        self._closed = False
        self._releasing: asyncio.Future[None] | None = None
        self._failures = 0

    def __aiter__(self) -> RedisSubscription:
        return self

    def partitions(self) -> frozenset[int]:
        """The partitions it reads now: those it owns and is not giving up."""
        return self._ownership.reading()

    async def __anext__(self) -> list[RedisDelivery]:
        while self._open():
            self._stepping = True
            try:
                batch = await self._step()
            except ClosedError:
                break
            except self._errors.unreachable as exc:
                if self._open():
                    await self._lost(exc)
                continue
            except RedisError as exc:
                if not self._open():
                    break
                if not stream_gone(exc):
                    raise self._errors.error(exc, "reading") from exc
                self._ready = False  # Redis lost the stream or group: create it again
                continue
            finally:
                self._stepping = False
                self._stepped.set()
            if self._failures:
                logger.info("%s: reading from Redis again", self.consumer)
                self._failures = 0
            if batch:
                self._settlement.hold([(d.stream, d.entry) for d in batch])
                if self._open():  # else released when the transport closes
                    return batch
        raise StopAsyncIteration

    def _open(self) -> bool:  # a call: mypy keeps no narrowing of it across awaits
        return not self._closed

    async def _step(self) -> list[RedisDelivery]:
        if not self._ready:
            await self._prepare()
        if self._new:
            new, self._new = self._new, {}
            await self._create_groups(new)
        now = time.monotonic()
        if self._pattern and now >= self._discover_at:
            await self._discover()
        room = self.prefetch - self._settlement.unsettled
        if room <= 0:
            self._settlement.freed.clear()
            await self._settlement.freed.wait()
            return []
        if not self._set.streams:
            await self._pause(self._discover_at - now)
            return []
        claim_at = min(self._claim_at, self._wakes[0]) if self._wakes else self._claim_at
        if now >= claim_at:
            claimed = await self._claim(room)
            if claimed:
                return claimed
            claim_at = min(self._claim_at, self._wakes[0]) if self._wakes else self._claim_at
        until = min(claim_at, self._discover_at) if self._pattern else claim_at
        return await self._read(room, until - now)

    async def _prepare(self) -> None:
        client = await self._connected()
        if self._reader is None:
            self._reader = Redis(
                connection_pool=client.connection_pool, single_connection_client=True
            )
            self._reader.response_callbacks.clear()
        self._reader_id = await command(self._reader, "CLIENT", "ID")
        if self._pattern:
            self._discover_at = 0.0
            await self._discover()
        else:
            self._set.add_topics({self._keys.stream(self.topic).encode(): self.topic})
        await self._create_groups(self._set.streams)
        self._new.clear()
        self._ownership.run()
        self._ready = True

    async def _create_groups(self, streams: Iterable[bytes]) -> set[bytes]:
        """Create the group on each stream; returns the keys that hold something other than a
        stream (another program's), which are left alone."""
        client = await self._connected()
        streams = list(streams)
        async with client.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.execute_command("XGROUP", "CREATE", stream, self.group, "0", "MKSTREAM")
            results = await pipe.execute(raise_on_error=False)
        not_streams = set()
        for stream, result in zip(streams, results, strict=True):
            if isinstance(result, BaseException) and str(result).startswith("WRONGTYPE"):
                not_streams.add(stream)
            elif isinstance(result, BaseException) and not str(result).startswith("BUSYGROUP"):
                raise result
        return not_streams

    async def _discover(self) -> None:
        client = await self._connected()
        keys = self._keys
        found: dict[bytes, str] = {}
        for member in await command(client, "SMEMBERS", keys.topics):
            topic = member.decode(errors="replace")
            if "\ufffd" in topic:
                continue  # not a topic tidings wrote (not UTF-8): no tidings stream behind it
            stream = keys.stream(topic).encode()
            if stream not in self._set.streams and matches(self.topic, topic):
                found[stream] = topic
        if found:
            for stream in await self._create_groups(found):
                if stream not in self._ignored:
                    self._ignored.add(stream)
                    logger.warning("%r holds no stream; %s leaves it alone", stream, self.topic)
                del found[stream]
            added = self._set.add_topics(found)
            await self._create_groups(added.keys() - found.keys())
        self._discover_at = time.monotonic() + self._discovery

    async def _read(self, room: int, wait: float) -> list[RedisDelivery]:
        assert self._reader is not None
        block = min(max(wait, 0.001), MAX_BLOCK)
        tail = self._set.tail
        count = room if len(tail) == 3 else max(1, room // (len(tail) // 2))
        self._blocked_until = time.monotonic() + block
        try:
            reply = await command(
                self._reader,
                "XREADGROUP",
                "GROUP",
                self.group,
                self.consumer,
                "COUNT",
                count,
                "BLOCK",
                int(block * 1000) or 1,
                *tail,
            )
        finally:
            self._blocked_until = None
        if not reply:
            return []
        topic_of, settle = self._set.topic_of, self._settlement.settle
        batch = []
        for stream, entries in reply:
            topic = topic_of[stream]
            for entry, fields in entries:
                batch.append(RedisDelivery(settle, stream, entry, decode(topic, fields), 1))
        return batch

    async def _claim(self, room: int) -> list[RedisDelivery]:
        client = await self._connected()
        streams, fresh = list(self._set.streams), self._set.fresh
        count = max(1, room // len(streams))
        async with client.pipeline(transaction=False) as pipe:
            for stream in streams:
                cursor = self._cursors.get(stream, b"0-0")
                idle = 0 if stream in fresh else self._lease_ms  # a new owner takes all
                pipe.execute_command(
                    "XAUTOCLAIM", stream, self.group, self.consumer, idle, cursor, "COUNT", count
                )
            replies = await pipe.execute(raise_on_error=False)
        now = time.monotonic()
        while self._wakes and self._wakes[0] <= now:
            heapq.heappop(self._wakes)
        self._claim_at = now + self._claim_every
        claimed: list[tuple[bytes, bytes, list[bytes]]] = []
        for stream, reply in zip(streams, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            self._cursors[stream] = reply[0]
            if reply[0] != b"0-0":
                self._claim_at = now  # more to look at
            else:
                self._set.claimed(stream)
            claimed.extend((stream, entry, fields) for entry, fields in reply[1] if fields)
        if not claimed:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for stream, entry, _ in claimed:
                pipe.execute_command("XPENDING", stream, self.group, entry, entry, 1)
            pending = await pipe.execute()
        return [
            RedisDelivery(
                self._settlement.settle,
                stream,
                entry,
                decode(self._set.topic_of[stream], fields),
                int(found[0][3]) if found else 2,
            )
            for (stream, entry, fields), found in zip(claimed, pending, strict=True)
        ]

    async def _own(self, partitions: set[int]) -> None:
        added = self._set.own(partitions)
        for stream in added:
            self._cursors.pop(stream, None)
        self._new.update(added)
        self._claim_at = 0.0  # claim what the last owner left before reading on
        await self._unblock()

    async def _disown(self, partitions: set[int]) -> None:
        self._set.disown(partitions)
        await self._unblock()  # a read of them in progress ends now

    async def _drained(self, partitions: set[int]) -> None:
        if self._stepping:  # a read that began before they were disowned
            self._stepped.clear()
            await self._stepped.wait()
        await self._settlement.drained(self._set.partitions(partitions))

    async def _lost(self, exc: BaseException) -> None:
        self._failures += 1
        self._ready = False  # after reconnecting, create the groups again
        self._reader_id = None
        if self._failures == 1:
            logger.warning("%s: lost Redis (%s); retrying", self.consumer, exc)
        await self._pause(min(0.05 * 2 ** (self._failures - 1), 2.0))

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the subscription closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), max(seconds, 0.001))

    async def _nacked(self, due: list[float]) -> None:
        for when in due:
            heapq.heappush(self._wakes, when)
        blocked = self._blocked_until
        if blocked is not None and self._wakes[0] < blocked:
            await self._unblock()  # read again once the first of them is due

    async def _unblock(self) -> None:
        """Make a blocked XREADGROUP of this subscription return now (it answers nil)."""
        with contextlib.suppress(*self._errors.unreachable, RedisError, ClosedError):
            client = await self._connected()
            for _ in range(_UNBLOCK_TRIES):
                reader = self._reader_id
                if reader is None or self._blocked_until is None:
                    return
                if await command(client, "CLIENT", "UNBLOCK", reader):
                    return
                # The read is on its way to Redis on the other connection: not blocked yet.
                await asyncio.sleep(0.005)

    async def aclose(self) -> None:
        """Stop fetching; the iteration ends. Deliveries handed out can still be settled until
        the transport closes, which releases the rest to the group; once all are settled, the
        partitions' leases are released for the group's other members. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._settlement.freed.set()
        self._settlement.stop_keeping()
        await self._unblock()
        self._releasing = asyncio.ensure_future(self._release_when_settled())

    async def _release_when_settled(self) -> None:
        await self._drained(set(self._ownership.owned))
        await self._ownership.aclose()

    async def finish(self) -> None:
        """Close for good (the transport is closing): release unsettled deliveries so another
        subscription of the group claims them at once, send the last acks (one try), and remove
        this consumer from its groups when it holds nothing there."""
        await self.aclose()
        if self._stepping:
            self._stepped.clear()
            await self._stepped.wait()
        await self._settlement.finish()
        await self._ownership.aclose()
        if self._releasing is not None:
            self._releasing.cancel()
        with contextlib.suppress(*self._errors.unreachable, RedisError, ClosedError):
            await forget_consumer(
                await self._connected(), self._set.streams, self.group, self.consumer
            )
        if self._reader is not None:
            await self._reader.aclose()
