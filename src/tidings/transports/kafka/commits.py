"""Offsets of one Kafka group member, committed in bulk after handling.

Kafka keeps one offset per partition and group, and committing an offset commits every record
before it; a member's partitions record each offset they may commit (see
:mod:`~tidings.transports.kafka.subscription`) and :class:`Committer` writes them through the
kit's :class:`~tidings.transports.kit.settle.Settler`: one commit in flight, then a pause of
``commit_interval``, then one commit of everything recorded meanwhile (a partition's offsets only
grow, so its last one is committed). The pause is skipped while someone waits for the commits (a
rebalance taking partitions away, the member leaving). Offsets of partitions no longer assigned
are left out: their new owner delivers those records again.

Committing never stops while the member lives: a commit the group refuses because its partitions
moved elsewhere (their new owner delivers those records again) is dropped, any other failure,
whatever its type, keeps the offsets and is tried again with a capped backoff, logged when the
trouble begins and when it is over.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from aiokafka.errors import CommitFailedError, IllegalStateError

from tidings.transports.kit.settle import Settler

__all__ = ["Committer"]

_log = logging.getLogger("tidings.transports.kafka")


class Committer:
    """The offsets of one member (a started aiokafka consumer of ``group``), committed in bulk.

    :meth:`record` is cheap and never waits; :meth:`flush` waits for what was recorded to be
    committed, :meth:`close` commits it at once (one try) and ignores later records.
    """

    __slots__ = ("_closing", "_consumer", "_failing", "_group", "_hurry", "_interval", "_settler")

    def __init__(self, consumer: Any, *, group: str, interval: float) -> None:
        self._consumer = consumer
        self._group = group
        self._interval = interval
        self._failing = False
        self._closing = False
        self._hurry = asyncio.Event()
        """Set while someone waits for the commits: the pause between two is skipped."""
        self._settler: Settler[tuple[Any, int]] = Settler(
            self._commit, name=f"offsets of group {group!r}", transient=(Exception,)
        )

    def record(self, tp: Any, offset: int) -> None:
        """Commit ``offset`` (the next record to read) on the partition ``tp`` soon."""
        self._settler.record((tp, offset))

    async def flush(self, timeout: float) -> None:
        """Return once what was recorded is committed, or after ``timeout`` seconds (the
        committing goes on)."""
        self._hurry.set()
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._settler.drain(), timeout)
        finally:
            if not self._closing:
                self._hurry.clear()

    async def close(self) -> None:
        """Commit what was recorded (what fails now is given up, logged: it comes again)."""
        self._closing = True
        self._hurry.set()
        await self._settler.close()

    async def _commit(self, batch: list[tuple[Any, int]]) -> None:
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in batch if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the group moved these partitions elsewhere; their new owner delivers them again
            _log.info("offsets of group %r not committed after a rebalance: %s", self._group, exc)
            return
        except Exception as exc:  # kept and tried again by the Settler, whatever went wrong
            if not self._failing and not self._closing:  # closing: the Settler says it
                self._failing = True
                _log.warning(
                    "committing offsets of group %r failed, trying again until it works: %r",
                    self._group,
                    exc,
                )
            raise
        if self._failing:
            self._failing = False
            _log.warning("committing offsets of group %r works again", self._group)
        if not self._hurry.is_set():  # at most one commit per interval, unless waited for
            with suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._hurry.wait()
