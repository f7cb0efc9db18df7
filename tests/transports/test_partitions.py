"""Keys to partitions, and partitions to subscriptions by leases (the kit, over leases kept in
memory: the brokers' own leases are tested with their transports)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest

from tidings.transports.kit.ownership import CATCHING_UP, Ownership
from tidings.transports.kit.partitions import check_partitions, partition_name, partition_of
from tidings.transports.kit.sharing import key_hash


def test_a_key_has_one_partition_everywhere() -> None:
    assert partition_of("user-1", 16) == key_hash("user-1") % 16
    assert {partition_of(f"k{n}", 7) for n in range(200)} == set(range(7))
    assert partition_name("orders", 3) == "orders#3"
    with pytest.raises(ValueError, match="partitions"):
        check_partitions("redis", 0)


class Table:
    """Leases and presence kept in memory, shared by the subscriptions of one test."""

    def __init__(self) -> None:
        self.owners: dict[int, str] = {}
        self.live: set[str] = set()
        self.released = asyncio.Event()

    async def until_held(self, count: int) -> None:
        """Return once at most ``count`` partitions are leased (handing over runs as a task)."""
        while len(self.owners) > count:
            self.released.clear()
            await self.released.wait()

    def leases(self, name: str) -> Leases:
        return Leases(self, name)


class Leases:
    def __init__(self, table: Table, name: str) -> None:
        self.table, self.name = table, name

    async def announce(self) -> list[str]:
        self.table.live.add(self.name)
        return sorted(self.table.live)

    async def hold(self, held: Sequence[int], wanted: Sequence[int], limit: int) -> set[int]:
        owners = self.table.owners
        mine = {p for p in held if owners.get(p) == self.name}
        for p in wanted:
            if len(mine) >= limit:
                break
            if p not in owners:
                owners[p] = self.name
                mine.add(p)
        return mine

    async def release(self, partitions: Collection[int]) -> None:
        for p in partitions:
            if self.table.owners.get(p) == self.name:
                del self.table.owners[p]
        self.table.released.set()

    async def leave(self) -> None:
        self.table.live.discard(self.name)


class Reader:
    """What a subscription reads, and whether what it handed out is settled."""

    def __init__(self, table: Table, name: str) -> None:
        self.reading: set[int] = set()
        self.settled = asyncio.Event()
        self.settled.set()
        self.ownership = Ownership(
            table.leases(name), count=16, lease=1.0, name=name,
            start=self.start, stop=self.stop, drained=self.drained,
        )  # fmt: skip

    async def start(self, partitions: set[int]) -> None:
        self.reading |= partitions

    async def stop(self, partitions: set[int]) -> None:
        self.reading -= partitions

    async def drained(self, partitions: set[int]) -> None:
        await self.settled.wait()


async def test_subscriptions_share_the_partitions_and_hand_them_over_drained() -> None:
    table = Table()
    a, b = Reader(table, "a"), Reader(table, "b")
    await a.ownership.round()
    assert a.reading == set(range(16)), "alone, it reads every partition"
    a.settled.clear()  # a holds unsettled deliveries
    await b.ownership.round()
    await a.ownership.round()
    assert len(a.reading) == 8, "a stops reading what is b's share at once"
    assert len(table.owners) == 16, "but keeps the leases until it settled what it handed out"
    await b.ownership.round()
    assert b.reading == set(), "b takes nothing a still holds"
    a.settled.set()
    await table.until_held(8)
    await b.ownership.round()
    assert a.reading.isdisjoint(b.reading)
    assert a.reading | b.reading == set(range(16))


async def test_what_a_closed_subscription_held_goes_to_the_others() -> None:
    table = Table()
    a, b, c = Reader(table, "a"), Reader(table, "b"), Reader(table, "c")
    for reader in (a, b, c, a):
        await reader.ownership.round()
    await table.until_held(6)  # a keeps its share
    await b.ownership.round()
    await c.ownership.round()
    assert sorted(len(r.reading) for r in (a, b, c)) == [5, 5, 6], "shares add up to 16"
    await c.ownership.aclose()
    await a.ownership.round()
    await b.ownership.round()
    assert a.reading | b.reading == set(range(16))
    assert a.reading.isdisjoint(b.reading)


async def test_rounds_come_sooner_while_a_subscription_holds_less_than_its_share() -> None:
    """A newcomer, or one waiting for partitions handed over to it, looks again after
    CATCHING_UP seconds; one holding its share every period (a third of the lease, at most 1 s)."""
    table = Table()
    a, b = Reader(table, "a"), Reader(table, "b")
    assert a.ownership.until_next_round() == CATCHING_UP, "before its first round"
    await a.ownership.round()
    assert a.ownership.until_next_round() == a.ownership.period == pytest.approx(1 / 3)
    a.settled.clear()  # a holds unsettled deliveries: b's share is not free yet
    await b.ownership.round()
    await a.ownership.round()
    assert a.ownership.until_next_round() == a.ownership.period, "giving up counts as given"
    assert b.ownership.until_next_round() == CATCHING_UP, "b waits for its share"
    a.settled.set()
    await table.until_held(8)
    await b.ownership.round()
    assert b.ownership.until_next_round() == b.ownership.period
