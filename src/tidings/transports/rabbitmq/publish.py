"""Confirmed publishing on the transport's robust channel, and delayed copies for ``nack(delay)``.

Publishes go through aiormq's public ``Channel.basic_publish`` on a channel in confirm mode. A
batch is issued as that many concurrent publishes (written in order: each takes the channel's
lock in turn) whose confirmations are awaited together, so a batch costs one round trip, not one
per message. Publishes that must come back when unroutable (``mandatory``) raise the client's
``PublishError`` when the broker returns them. With the aiormq and pamqp versions it was tested
with, a batch that is not mandatory takes :mod:`.fast_path` instead (several times faster).

While the connection is down (a broker restart) a send waits up to ``reconnect_timeout`` for
aio-pika's robust channel to come back, then sends again what was not confirmed (so a message may
arrive twice), or raises ServiceUnavailable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from aiormq.exceptions import ChannelClosed, ChannelInvalidStateError
from pamqp.commands import Basic

from tidings.errors import ServiceUnavailable, TransportError
from tidings.message import Message
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.rabbitmq import fast_path
from tidings.transports.rabbitmq.options import RabbitMQOptions
from tidings.transports.rabbitmq.wire import QUORUM, delay_bucket, properties_of

if TYPE_CHECKING:
    import aiormq
    from aio_pika.abc import AbstractRobustChannel

__all__ = ["Publisher", "Route", "lost"]

Route = tuple[str, str]
"""Where a message goes: (exchange, routing key)."""


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the channel or connection went away (worth sending again)."""
    return (
        isinstance(exc, ConnectionError | ChannelInvalidStateError | asyncio.CancelledError)
        or type(exc) is ChannelClosed
    )


async def underlay_of(channel: AbstractRobustChannel) -> aiormq.Channel:
    """The aiormq channel under an aio-pika one (publishes and acks go straight to it)."""
    return cast("aiormq.Channel", await channel.get_underlay_channel())


class Publisher:
    """Confirmed sends of one transport. ``channel()`` is the transport's robust publishing
    channel (connecting first if needed); ``check_open()`` raises ClosedError once the
    transport closed. Safe for concurrent use by tasks of one event loop."""

    def __init__(
        self,
        options: RabbitMQOptions,
        errors: ErrorMap,
        channel: Callable[[], Awaitable[AbstractRobustChannel]],
        check_open: Callable[[], None],
    ) -> None:
        self._options = options
        self._errors = errors
        self._robust = channel
        self._check_open = check_open
        self._current: aiormq.Channel | None = None
        self._usable: aiormq.Channel | None = None  # the last channel the transport put to use
        self._used = asyncio.Event()
        self._delays: set[int] = set()
        self._busy = 0
        self._idle: asyncio.Event | None = None

    def use(self, channel: aiormq.Channel) -> None:
        """Publish on ``channel``, the robust channel's underlay, once the transport declared
        on its connection what publishing needs (at start, and again after a reconnect)."""
        self._current = self._usable = channel
        self._used.set()

    async def idle(self) -> None:
        """Return once no send is in progress."""
        if self._busy:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def gone(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"RabbitMQ at {self._errors.where} did not come back within "
            f"{self._options.reconnect_timeout:g}s"
        )

    async def send(
        self,
        routes: Sequence[Route],
        bodies: Sequence[bytes],
        props: Sequence[Basic.Properties],
        *,
        mandatory: bool,
    ) -> None:
        """Publish each of ``bodies`` to its route (exchange, routing key), in order, with
        confirms; sends again what a lost connection left unconfirmed.

        Raises ServiceUnavailable when the broker stays away, TransportError when it nacks or
        returns a message."""
        self._busy += 1
        try:
            todo: Sequence[int] = range(len(bodies))
            deadline: float | None = None
            while True:
                channel = self._current
                if channel is None or channel.is_closed:
                    deadline = deadline or self._deadline()
                    channel = await self._ready(deadline)
                with self._errors.mapping(f"publishing to {routes[0][1]!r}"):
                    todo = await _confirmed(channel, routes, bodies, props, todo, mandatory)
                if not todo:
                    return
                deadline = deadline or self._deadline()
                if asyncio.get_running_loop().time() > deadline:
                    raise self.gone()
                self._current = None
        finally:
            self._busy -= 1
            if self._busy == 0 and self._idle is not None:
                self._idle.set()

    async def publish_later(
        self, message: Message, topic: str, attempt: int, delay: float, queue: str
    ) -> None:
        """Put ``message`` (of ``topic``) into ``queue`` again after ``delay`` seconds, as
        attempt ``attempt``; returns once the delayed copy is stored durably.

        The copy waits in the shared delay queue of its bucket with a per-message expiration;
        RabbitMQ then dead-letters it to the default exchange, whose routing key is ``queue``.
        The delay queue is declared on first use, and again if the broker returns the copy (it
        was deleted)."""
        bucket = delay_bucket(delay)
        name = f"{self._options.exchange}.delay.{bucket}"
        expiration = str(max(1, round(delay * 1000)))
        props = properties_of(message, retry=(topic, attempt), expiration=expiration)
        for last in (False, True):
            if bucket not in self._delays:
                await self._declare_delay(name)
                self._delays.add(bucket)
            try:
                await self.send([(name, queue)], [message.data], [props], mandatory=True)
                return
            except TransportError as exc:
                self._delays.discard(bucket)
                if last or isinstance(exc, ServiceUnavailable):
                    raise

    async def _declare_delay(self, name: str) -> None:
        channel = await self._ready(self._deadline())
        arguments = {
            **QUORUM,
            "x-dead-letter-exchange": "",  # the default exchange: routing key = target queue
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
        }
        with self._errors.mapping(f"declaring the delay queue {name!r}"):
            await channel.exchange_declare(name, exchange_type="fanout", durable=True)
            await channel.queue_declare(name, durable=True, arguments=arguments)
            await channel.queue_bind(name, name, routing_key="")

    async def _ready(self, deadline: float) -> aiormq.Channel:
        """The publishing channel, once (re)opened and put to use by the transport (see
        :meth:`use`); ServiceUnavailable after ``deadline``."""
        robust = await self._robust()
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    self._check_open()
                    await robust.ready()
                    underlay = await underlay_of(robust)
                    if underlay.is_closed:
                        await asyncio.sleep(0.05)  # closed again before we got to it: back off
                    elif underlay is self._usable:
                        self._current = underlay
                        return underlay
                    else:  # a new connection, where the transport has yet to declare
                        self._used.clear()
                        await self._used.wait()
        except TimeoutError:
            raise self.gone() from None

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._options.reconnect_timeout


async def _confirmed(
    channel: aiormq.Channel,
    routes: Sequence[Route],
    bodies: Sequence[bytes],
    props: Sequence[Basic.Properties],
    todo: Sequence[int],
    mandatory: bool,
) -> list[int]:
    """Publish the messages at indexes ``todo`` concurrently and await their confirmations;
    returns the indexes a closed channel left unconfirmed. Raises the first final error."""
    if fast_path.ENABLED and not mandatory:
        confirmations, written = await fast_path.write(channel, routes, bodies, props, todo)
        if len(confirmations) == 1:  # gather would wake this Task through one more callback
            outcomes = [await _outcome(confirmations[0])]
        else:
            outcomes = await asyncio.gather(*confirmations, return_exceptions=True)
        return _unconfirmed(todo[:written], outcomes) + list(todo[written:])
    outcomes = await asyncio.gather(
        *[
            channel.basic_publish(
                bodies[i],
                exchange=routes[i][0],
                routing_key=routes[i][1],
                properties=props[i],
                mandatory=mandatory,
                wait=False,  # do not wait for each write to drain: the confirmations tell
            )
            for i in todo
        ],
        return_exceptions=True,
    )
    return _unconfirmed(todo, outcomes)


async def _outcome(confirmation: asyncio.Future[Any]) -> Any:
    """The confirmation's result or error, as ``gather(..., return_exceptions=True)`` gives it;
    cancelling the caller still cancels it."""
    try:
        return await confirmation
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the caller was cancelled, not the confirmation (the channel closed)
        return exc
    except Exception as exc:
        return exc


def _unconfirmed(todo: Sequence[int], outcomes: Sequence[Any]) -> list[int]:
    """The indexes to send again; raises the first final error."""
    retry = []
    for i, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not lost(outcome):
                raise outcome
            retry.append(i)
    return retry
