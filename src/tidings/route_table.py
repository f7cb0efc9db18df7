"""The bus's routes, and which of them a topic reaches.

Looking routes up by topic is on every publish path, so the answer is cached per topic (bounded:
an application publishing to many distinct topics pays a recomputation, not memory). Anything
derived from the routes registers to be told when they change.
"""

from __future__ import annotations

from collections.abc import Callable

from tidings.route import Route
from tidings.topics import CACHE_SIZE, matches

__all__ = ["RouteTable"]


class RouteTable:
    """Routes in subscription order, and the routes of each topic looked up so far."""

    __slots__ = ("_by_topic", "_listeners", "_routes")

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._listeners: list[Callable[[], None]] = []
        self._by_topic: dict[str, tuple[Route, ...]] = {}

    @property
    def all(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def add(self, route: Route) -> None:
        self._routes.append(route)
        self._changed()

    def remove(self, route: Route) -> None:
        """Raises ValueError if ``route`` is not in the table."""
        self._routes.remove(route)
        self._changed()

    def shares_group(self, route: Route) -> bool:
        """Whether another route in the table consumes ``route``'s group and topic."""
        return any(r.topic == route.topic and r.group == route.group for r in self._routes)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a route is added or removed."""
        self._listeners.append(listener)

    def for_topic(self, topic: str) -> tuple[Route, ...]:
        """The routes a message on ``topic`` reaches, in subscription order."""
        try:
            return self._by_topic[topic]
        except KeyError:
            found = tuple(r for r in self._routes if matches(r.topic, topic))
            if len(self._by_topic) >= CACHE_SIZE:
                self._by_topic.clear()
            self._by_topic[topic] = found
            return found

    def _changed(self) -> None:
        self._by_topic.clear()
        for listener in self._listeners:
            listener()
