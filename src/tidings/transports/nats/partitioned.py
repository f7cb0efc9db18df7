"""Partitions on NATS JetStream: leases in a key-value bucket, a durable consumer per partition.

A keyed message is published on its partition's subject (``<prefix>#.<n>.<topic>``, see
:attr:`~tidings.transports.nats.options.NatsOptions.partition_prefix`); a group's subscription
reads the group's shared consumer of the topic (messages without a key) and the group's durable
consumer of each partition it owns. JetStream 2.9 has no pinned consumers, so ownership is kept
by the kit's :class:`~tidings.transports.kit.ownership.Ownership` over :class:`NatsLeases`:

* a lease is the key ``lease.<scope>.<n>`` of the bucket ``<stream>_PARTITIONS``, whose entries
  last a lease (the bucket's ``ttl``): taken with ``create`` (only if absent), renewed with
  ``update`` at the revision last written (compare-and-set), deleted at that revision too;
* presence is the key ``members.<scope>``: a JSON map of live subscriptions to when their
  presence ends, rewritten by each at the revision it read.

A partition's lease lasts ``ack_wait + pull_expires + 1`` seconds (13 by default): what a dead
owner took (through its pull requests, which outlive it until they expire) is due for redelivery
before its lease runs out, and JetStream hands a consumer's redeliveries out before new messages,
so the next owner handles them first. A live owner's deliveries do not come due, however long
they take: it reports them in progress (:mod:`.subscription`). A subscription giving a
partition up waits, besides for what it handed out to be settled, for its pull requests of that
partition to expire.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

import msgspec
import nats.js.errors
from nats.js.kv import KeyValue

from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.partitioned import Partitioned
from tidings.transports.nats.subscription import NatsDelivery, NatsSubscription

__all__ = ["NatsLeases", "PartitionedSubscription"]

_TRIES = 5
"""Compare-and-set attempts on the members map per round (others write it too)."""
_Members = dict[str, float]


class NatsLeases:
    """The partition leases and presence of one subscription (:attr:`name`, made up here) under
    ``scope`` (its group and topic) in the bucket ``bucket()`` returns, each lasting ``lease``
    seconds; see the module docstring."""

    def __init__(
        self,
        bucket: Callable[[], Awaitable[KeyValue]],
        errors: ErrorMap,
        *,
        scope: str,
        lease: float,
    ) -> None:
        self._bucket = bucket
        self._errors = errors
        self._scope = scope
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._name = self.name
        self._consumer = self.name.encode()
        self.lease = lease
        self._revisions: dict[int, int] = {}

    async def announce(self) -> list[str]:
        members = await self._members(lambda live: live | {self._name: time.time() + self.lease})
        return sorted(members)

    async def hold(self, held: Sequence[int], wanted: Sequence[int], limit: int) -> set[int]:
        kv = await self._bucket()
        mine: set[int] = set()
        with self._errors.mapping("keeping partition leases"):
            for partition in held:
                last = self._revisions.pop(partition, None)
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                    revision = await kv.update(self._key(partition), self._consumer, last=last)
                    self._revisions[partition] = revision
                    mine.add(partition)
            for partition in wanted:
                if len(mine) >= limit:
                    break
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                    revision = await kv.create(self._key(partition), self._consumer)
                    self._revisions[partition] = revision
                    mine.add(partition)
        return mine

    async def release(self, partitions: Collection[int]) -> None:
        kv = await self._bucket()
        with self._errors.mapping("releasing partition leases"):
            for partition in partitions:
                last = self._revisions.pop(partition, None)
                if last is not None:
                    with contextlib.suppress(nats.js.errors.APIError):  # not ours any more
                        await kv.delete(self._key(partition), last=last)

    async def leave(self) -> None:
        await self._members(lambda live: {n: t for n, t in live.items() if n != self._name})

    def _key(self, partition: int) -> str:
        return f"lease.{self._scope}.{partition}"

    async def _members(self, change: Callable[[_Members], _Members]) -> _Members:
        """Rewrite the members map with ``change`` (expired members left out); the new map."""
        kv = await self._bucket()
        key = f"members.{self._scope}"
        with self._errors.mapping("keeping the group's members"):
            for _ in range(_TRIES):
                try:
                    entry = await kv.get(key)
                    live = msgspec.json.decode(entry.value or b"{}", type=_Members)
                    last = entry.revision
                except nats.js.errors.KeyDeletedError as exc:
                    live, last = {}, exc.entry.revision if exc.entry is not None else 0
                except nats.js.errors.KeyNotFoundError:
                    live, last = {}, 0
                now = time.time()
                members = change({n: t for n, t in live.items() if t > now})
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                    await kv.update(key, msgspec.json.encode(members), last=last)
                    return members
        return members  # others kept writing: the next round tries again


class PartitionedSubscription(Partitioned[NatsSubscription, NatsDelivery]):
    """A group's subscription to a topic: its ``shared`` consumer's deliveries, and those of
    the consumer of each of ``count`` partitions it owns by ``leases`` (``partition(n)`` makes
    that one's subscription). Iterate it from one task."""

    def __init__(
        self,
        shared: NatsSubscription,
        partition: Callable[[int], NatsSubscription],
        leases: NatsLeases,
        *,
        count: int,
    ) -> None:
        super().__init__(shared, partition, leases, count=count)

    async def start(self, partitions: set[int]) -> None:
        if self._closed:  # taken in a round that was running: released when the leases are
            return
        for n in partitions:
            self._parts[n] = self._partition(n)
            self._batches.follow(self._parts[n])

    async def _settled(self, part: NatsSubscription) -> None:
        await part.settled()

    def reset(self) -> None:
        """The connection was re-established: see :meth:`NatsSubscription.reset`."""
        for subscription in self._every():
            subscription.reset()

    async def _finish(self) -> None:
        """Release the leases once what was handed out is settled: the group's other members
        take the partitions over from there (with the transport open or not)."""
        for part in list(self._parts.values()):
            await part.settled()
        await self._ownership.aclose()

    async def shutdown(self) -> None:
        """For the transport's close: every consumer's shutdown, then the leases released."""
        try:
            await self.aclose()
            for subscription in self._every():
                await subscription.shutdown()
        finally:
            self._batches.cancel()
            if self._finishing is not None:
                self._finishing.cancel()
            await self._ownership.aclose()
