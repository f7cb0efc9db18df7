"""What a Kafka group member fetched, per partition: deliveries, and which offsets they let the
member commit (see :mod:`~tidings.transports.kafka.subscription`)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from tidings.dead_letters import REPLAY_GROUP_HEADER
from tidings.errors import ClosedError
from tidings.message import Message
from tidings.transports.kafka.commits import Committer
from tidings.transports.kit.wire import ATTEMPT

__all__ = ["KafkaDelivery", "Member", "Partition"]

_log = logging.getLogger("tidings.transports.kafka")
_FIRST_BACKOFF = 0.1
_BACKOFF_CAP = 5.0
"""Most seconds between tries to publish a nacked message again."""


class Member(Protocol):
    """What a partition needs of the group member it was assigned to."""

    group: str
    closed: bool

    publish_again: Callable[[str, Sequence[Message]], Awaitable[None]]
    """Publishes nacked messages to their topic again."""

    def released(self) -> None:
        """One delivery was settled."""


class KafkaDelivery:
    """One record handed to one subscription. ``ack``/``nack`` are idempotent; only the first
    call counts."""

    __slots__ = ("_partition", "attempt", "done", "message", "offset", "settled", "started")

    def __init__(self, partition: Partition, offset: int, message: Message, attempt: int) -> None:
        self._partition = partition
        self.offset = offset
        self.message = message
        self.attempt = attempt
        self.settled = False
        """Acked or nacked: no longer counted against the prefetch limit."""
        self.done = False
        """May be committed: acked, or nacked and published again."""
        self.started = False
        """A handler took it: it stays with this member when its partition moves."""

    def start(self) -> bool:
        """A handler takes it now. False when its partition moved to another member first
        (:meth:`Partition.withdraw`): the handler must skip it, the next owner has it."""
        if self.settled:
            return False
        self.started = True
        return True

    async def ack(self) -> None:
        if not self.settled:
            self.settled = self.done = True
            partition = self._partition
            partition.released()
            partition.advance()

    async def nack(self, delay: float = 0.0) -> None:
        if not self.settled:
            self.settled = True
            partition = self._partition
            subscription = partition.subscription
            partition.released()
            # a closing member gives the message back by leaving it uncommitted
            if partition.live and not subscription.closed:
                partition.retry_later(self, delay)


class Partition:
    """The deliveries of one assigned partition not yet committable, oldest first."""

    __slots__ = (
        "_idle",
        "committer",
        "live",
        "pending",
        "retries",
        "subscription",
        "tp",
        "unsettled",
    )

    def __init__(self, subscription: Member, tp: Any, committer: Committer) -> None:
        self.subscription = subscription
        self.tp = tp
        self.committer = committer
        self.pending: deque[KafkaDelivery] = deque()
        self.retries: set[asyncio.Task[None]] = set()
        self.live = True
        self.unsettled = 0
        """Deliveries handed out and neither acked nor nacked."""
        self._idle: asyncio.Future[None] | None = None

    def released(self) -> None:
        """One of its deliveries was settled."""
        self.unsettled -= 1
        self.subscription.released()
        idle = self._idle
        if idle is not None and self.unsettled <= 0 and not idle.done():
            idle.set_result(None)

    async def settled(self) -> None:
        """Return once every delivery handed out of this partition is settled."""
        if self.unsettled > 0:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    def withdraw(self) -> None:
        """The partition moves: its deliveries handed out that no handler took yet count as
        settled, uncommitted; its next owner delivers them (they are skipped here)."""
        for delivery in self.pending:
            if not delivery.settled and not delivery.started:
                delivery.settled = True
                self.released()

    def advance(self) -> None:
        """Make the offset after the settled head of ``pending`` the next one to commit."""
        pending = self.pending
        if not pending[0].done:
            return
        last = pending.popleft()
        while pending and pending[0].done:
            last = pending.popleft()
        if self.live:
            self.committer.record(self.tp, last.offset + 1)

    def retry_later(self, delivery: KafkaDelivery, delay: float) -> None:
        task = asyncio.create_task(self._retry(delivery, delay))
        self.retries.add(task)
        task.add_done_callback(self.retries.discard)

    async def _retry(self, delivery: KafkaDelivery, delay: float) -> None:
        """Publish ``delivery``'s message again after ``delay``, trying until it is stored (or
        the transport closed), whatever goes wrong: until then its partition commits nothing
        past it."""
        await asyncio.sleep(delay)
        group = self.subscription.group
        again = delivery.message.with_headers(
            {ATTEMPT: str(delivery.attempt + 1), REPLAY_GROUP_HEADER: group}
        )
        backoff = 0.0
        while True:
            try:
                await self.subscription.publish_again(self.tp.topic, [again])
                break
            except ClosedError:
                return  # the original stays uncommitted: the group gets it again
            except Exception as exc:
                if not backoff:
                    _log.warning(
                        "publishing %s again for group %r failed, trying again until it works: %r",
                        again.id,
                        group,
                        exc,
                    )
                backoff = min(max(backoff * 2, _FIRST_BACKOFF), _BACKOFF_CAP)
                await asyncio.sleep(backoff)
        delivery.done = True
        self.advance()

    def revoke(self) -> None:
        """Forget this partition: later settlements are not committed, retries are dropped (the
        partition's next owner delivers those messages again)."""
        self.live = False
        for task in self.retries:
            task.cancel()
