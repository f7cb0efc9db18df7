"""Publishing, the half of :class:`~tidings.Bus` that sends: ``publish`` and its variants,
``publish_and_wait``, ``emit`` and ``request``.

A base class of ``Bus`` rather than a part it holds, so that the hot path (``bus.publish``) is
one method call; the bus sets up the parts named below in its ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tidings.direct import Direct
from tidings.envelopes import Envelopes
from tidings.errors import ClosedError
from tidings.message import Message
from tidings.outcome import PublishResult
from tidings.requests import Requests
from tidings.sending import Sender
from tidings.telemetry import Observer
from tidings.topics import validate_topic

__all__ = ["Publishing", "not_running"]


class Publishing:
    """Everything a bus publishes with."""

    inline: bool
    _envelopes: Envelopes
    _direct: Direct
    _sender: Sender
    _requests: Requests
    _offer: Callable[[str, Message], bool] | None
    _observer: Observer | None
    _running: bool
    _closed: bool
    _looked: bool

    def _observe(self) -> None:
        """Look for the application's OpenTelemetry set-up (the bus does)."""
        raise NotImplementedError

    def message(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """The envelope ``publish`` would send for ``event``; a Message passes through.

        Inside a handler the new message carries the handled message's correlation id and, as
        causation id, its id.
        """
        return self._envelopes.make(event, key, headers)

    async def publish(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        topic: str | None = None,
    ) -> Message:
        """Hand ``event`` to the transport; returns the message once it is accepted.

        Waits while a subscriber's channel is full (backpressure). Raises ClosedError when the
        bus is not running (use ``async with bus:``), TransportError when the broker fails.
        """
        message = self._envelopes.make(event, key, headers)
        if self.inline:  # no transport checks the topic here
            validate_topic(topic or message.type)
            await self._direct.run_each(message, topic or message.type)
            return message
        if not self._running:
            raise not_running()
        offer = self._offer
        if offer is not None and self._observer is None and offer(topic or message.type, message):
            return message
        return await self._sender.send(topic or message.type, message)

    async def publish_many(
        self,
        events: Iterable[Any],
        *,
        topic: str | None = None,
        key: Callable[[Any], str | None] | None = None,
    ) -> None:
        """Publish several events in one transport call per topic (one broker round trip).

        ``key`` gives each event's key (``key=lambda e: e.account_id``), for per-key order.
        Messages made with :meth:`message` pass as they are, each with its own key and headers.
        """
        make = self._envelopes.make
        messages = [make(e) for e in events] if key is None else [make(e, key(e)) for e in events]
        if not messages:
            return
        if not self._running:
            raise not_running()
        by_topic: dict[str, list[Message]] = {}
        for message in messages:
            by_topic.setdefault(topic or message.type, []).append(message)
        await self._sender.send_many(by_topic)

    def publish_nowait(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        topic: str | None = None,
    ) -> Message:
        """Queue ``event`` in process without waiting; raises QueueFull when a channel is full."""
        if not self._running:
            raise not_running()
        message = self._envelopes.make(event, key, headers)
        return self._sender.send_nowait(topic or message.type, message)

    async def publish_and_wait(
        self,
        event: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        topic: str | None = None,
    ) -> PublishResult:
        """Run every matching handler in this process and return their outcomes.

        The bus need not be running. Handlers that cannot suspend (``def``, or ``async def``
        without ``await``, and no middleware) run inline, in subscription order; the others run
        concurrently in Tasks. It returns when all have finished (retries included); handlers
        that failed their last attempt are in the dead-letter store by then. Raises ClosedError
        once the bus was closed, before any handler runs.
        """
        if self._closed:
            raise ClosedError("the bus was closed")
        message = self._envelopes.make(event, key, headers)
        if self.inline:
            validate_topic(topic or message.type)
            return await self._direct.run_each(message, topic or message.type)
        if not self._looked:
            self._observe()
        return await self._direct.run(message, topic or message.type)

    def emit(
        self, event: Any, *, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Deliver ``event`` to local handlers now, synchronously, in subscription order.

        Handlers without middleware or retry that cannot suspend (``def``, or ``async def``
        without ``await``) run right here. Others start in Tasks, as in ``publish_and_wait``,
        without being awaited (they need a running event loop). A failing handler is logged and
        dead-lettered; the others still run.
        """
        if not self._looked:
            self._observe()
        self._direct.emit(event, key, headers)

    async def request(
        self,
        event: Any,
        *,
        timeout: float = 5.0,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        topic: str | None = None,
    ) -> Any:
        """Publish ``event`` as a request and return the first reply a handler gives (a
        handler replies by returning a value: :mod:`tidings.requests`), across processes on
        every transport.

        Raises RequestTimeout when no reply comes within ``timeout`` seconds, NoResponder at
        once when the bus runs in process and no handler takes the topic, and what ``publish``
        raises.
        """
        return await self._requests.request(event, topic, key, headers, timeout)


def not_running() -> ClosedError:
    return ClosedError("the bus is not running: use `async with bus:` or `await bus.start()`")
