"""Recording what a bus delivers, and waiting for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from tidings.bus import Bus
from tidings.message import Message
from tidings.route import Route

__all__ = ["Recorder", "wait_for"]

E = TypeVar("E")


class Recorder:
    """Records every message delivered on a bus, whichever way it was published.

    It subscribes to every topic (``>``) in a group of its own, so it sees ``publish``,
    ``publish_many``, ``publish_and_wait`` and ``emit`` alike, on any transport::

        recorder = Recorder(bus)
        await bus.publish_and_wait(UserSignedUp(...))
        recorder.assert_published(UserSignedUp, count=1)
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.messages: list[Message] = []
        self._changed = asyncio.Event()
        self.route: Route = bus.subscribe(">", self._record, name="tidings.testing.Recorder")

    def _record(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    def published(self, kind: type[E] | str) -> list[Any]:
        """The events of this type (or on this topic), in delivery order."""
        topic = kind if isinstance(kind, str) else self.bus.registry.name_of(kind)
        return [m.data for m in self.messages if m.type == topic]

    def assert_published(
        self,
        kind: type | str,
        *,
        count: int | None = None,
        where: Callable[[Any], bool] | None = None,
    ) -> list[Any]:
        """Assert events of this type were published (exactly ``count`` of them, if given)."""
        found = [e for e in self.published(kind) if where is None or where(e)]
        name = kind if isinstance(kind, str) else kind.__name__
        if count is None:
            assert found, f"no {name} was published; published: {self._summary()}"
        else:
            assert len(found) == count, (
                f"expected {count} {name}, found {len(found)}; published: {self._summary()}"
            )
        return found

    def assert_not_published(self, kind: type | str) -> None:
        self.assert_published(kind, count=0)

    async def wait_for(
        self,
        kind: type[E] | str,
        *,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Any], bool] | None = None,
    ) -> list[Any]:
        """Wait until ``count`` matching events were recorded; raises TimeoutError naming them."""
        name = kind if isinstance(kind, str) else kind.__name__
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [e for e in self.published(kind) if where is None or where(e)]
                    if len(found) >= count:
                        return found
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"waited {timeout:g}s for {count} {name}; published: {self._summary()}"
            ) from None

    def clear(self) -> None:
        self.messages.clear()

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for message in self.messages:
            counts[message.type] = counts.get(message.type, 0) + 1
        return ", ".join(f"{n} x {t}" for t, n in counts.items()) or "nothing"


async def wait_for(
    bus: Bus,
    kind: type[E] | str,
    *,
    timeout: float = 5.0,
    where: Callable[[Any], bool] | None = None,
) -> Any:
    """The next event of this type (or on this topic) delivered on ``bus``.

    Subscribe first, then act: only events delivered after the call are seen. Raises
    TimeoutError after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    found: asyncio.Future[Any] = loop.create_future()

    def catch(event: Any) -> None:
        if not found.done() and (where is None or where(event)):
            found.set_result(event)

    route = bus.subscribe(kind, catch, name="tidings.testing.wait_for")
    try:
        async with asyncio.timeout(timeout):
            return await found
    except TimeoutError:
        name = kind if isinstance(kind, str) else kind.__name__
        raise TimeoutError(f"no {name} within {timeout:g}s") from None
    finally:
        bus.unsubscribe(route)
