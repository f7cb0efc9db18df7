"""Request and reply over any transport: ``await bus.request(event)`` returns what a handler gives
back.

A request is an ordinary message with a ``reply-to`` header naming the requesting bus's inbox,
a topic of its own (``tidings.inbox.<id>``) that the bus subscribes to on its first request. A
handler replies by returning a value, and only a handler whose return annotation says it returns
something (``-> Quote``, not ``-> None`` nor no annotation) does: the reply is published to the
inbox with an ``in-reply-to`` header, and the first reply to arrive answers the request (later
ones are dropped). Replies travel like every message, so they work across processes on every
transport, at least once: a handler retried after replying may reply again, which the inbox
ignores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sized
from typing import Any

from tidings.errors import NoResponder, RequestTimeout
from tidings.handlers import EventDecoder
from tidings.message import IN_REPLY_TO, REPLY_TO, Message, new_id

__all__ = ["Inbox", "Replier", "Requests"]

Send = Callable[[str, Message], Awaitable[Any]]
MakeMessage = Callable[[Any, Any, Any], Message]
Subscribe = Callable[[str, Callable[[Message], None]], Any]
Responders = Callable[[str], Sized]
"""The routes of this process that take a topic (in process only)."""


class Replier:
    """What a replying handler's wrapper calls with its return value."""

    __slots__ = ("_make", "_send", "_tasks")

    def __init__(self, make: MakeMessage, send: Send) -> None:
        self._make = make
        self._send = send
        self._tasks: set[asyncio.Task[Any]] = set()

    async def reply(self, request: Message | None, result: Any) -> None:
        """Publish ``result`` to the inbox ``request`` names (nothing when it names none)."""
        if request is None or (to := request.headers.get(REPLY_TO)) is None:
            return
        await self._send(to, self._make(result, None, {IN_REPLY_TO: request.id}))

    def reply_soon(self, request: Message | None, result: Any) -> None:
        """The same, from a plain ``def`` handler: published in a Task of its own."""
        if request is None or REPLY_TO not in request.headers:
            return
        task = asyncio.get_running_loop().create_task(self.reply(request, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Inbox:
    """One bus's replies: a topic, and the requests waiting for an answer."""

    __slots__ = ("_decode", "_waiting", "opened", "topic")

    def __init__(self, decode: EventDecoder) -> None:
        self.topic = f"tidings.inbox.{new_id().replace('-', '')}"
        self._decode = decode
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self.opened = asyncio.Event()
        """Set when the inbox received a message: from now on no reply can miss it."""

    def expect(self, request_id: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def receive(self, message: Message) -> None:
        """The handler of the inbox topic: answers the request the reply names, once."""
        self.opened.set()
        future = self._waiting.pop(message.headers.get(IN_REPLY_TO, ""), None)
        if future is None or future.done():
            return  # a late or repeated reply: its request already has an answer, or gave up
        try:
            future.set_result(self._decode(message))
        except Exception as exc:  # an undecodable reply fails the request that waits for it
            future.set_exception(exc)


class Requests:
    """A bus's side of requests: its inbox, opened on the first request.

    Where a new subscription only receives what is published after it is in place (RabbitMQ),
    the inbox counts as open once a message it sent itself arrived: a reply can then not be lost.
    """

    __slots__ = (
        "_confirm",
        "_decode",
        "_make",
        "_opening",
        "_publish",
        "_responders",
        "_subscribe",
    )

    def __init__(
        self,
        make: MakeMessage,
        publish: Send,
        subscribe: Subscribe,
        decode: EventDecoder,
        *,
        responders: Responders | None,
        confirm_open: bool,
    ) -> None:
        self._make = make
        self._publish = publish
        self._subscribe = subscribe
        self._decode = decode
        self._responders = responders
        self._confirm = confirm_open
        self._opening: asyncio.Future[Inbox] | None = None

    async def request(
        self, event: Any, topic: str | None, key: str | None, headers: Any, timeout: float
    ) -> Any:
        inbox = await self._inbox()
        message = self._make(event, key, {**(headers or {}), REPLY_TO: inbox.topic})
        target = topic or message.type
        if self._responders is not None and not self._responders(target):
            raise NoResponder(f"no handler in this process takes {target!r}")
        answer = inbox.expect(message.id)
        try:
            await self._publish(target, message)
            try:
                async with asyncio.timeout(timeout):
                    return await answer
            except TimeoutError:
                raise RequestTimeout(target, timeout) from None
        finally:
            inbox.forget(message.id)

    async def _inbox(self) -> Inbox:
        if self._opening is None or (self._opening.done() and self._opening.exception()):
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> Inbox:
        inbox = Inbox(self._decode)
        self._subscribe(inbox.topic, inbox.receive)
        while self._confirm and not inbox.opened.is_set():
            await self._publish(inbox.topic, Message(_OPENED, b"{}", {IN_REPLY_TO: _OPENED}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await inbox.opened.wait()
        return inbox


_OPENED = "tidings.inbox_opened"
