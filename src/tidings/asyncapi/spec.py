"""The AsyncAPI 3.0 document of a bus: what it sends, what it receives, where and in what shape."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tidings.asyncapi.headers import CORRELATION, HEADERS, NAME
from tidings.asyncapi.schemas import payload_schemas
from tidings.asyncapi.servers import servers
from tidings.topics import is_pattern, matches

if TYPE_CHECKING:
    from tidings.bus import Bus
    from tidings.route import Route

__all__ = ["VERSION", "document"]

VERSION = "3.0.0"
"""The AsyncAPI version of the documents made here."""

_NOT_A_KEY = re.compile(r"[^\w.\-]")
_PATTERN = (
    "A pattern: `*` stands for one token, `>` for one or more at the end. Its messages are the "
    "known events whose names it matches; others published to matching topics reach it too."
)


def document(
    bus: Bus,
    *,
    title: str = "tidings application",
    version: str = "1.0.0",
    description: str | None = None,
    events: Iterable[type] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``bus``, as plain data ready for JSON or YAML.

    ``events`` are the event classes the application publishes: a ``send`` operation each, on
    the channel of its name. By default they are every class in the bus's registry, that is every
    class decorated with ``@tidings.event`` (or published) in this process so far. Each route is
    a ``receive`` operation on the channel of its topic or pattern, naming its group as
    ``x-tidings-group`` (and as the Kafka binding's ``groupId`` on Kafka). Servers come from
    ``bus.url`` without credentials. Nothing is connected to; the bus need not be running.
    Raises ValueError when two event classes need one schema name (see :mod:`.schemas`).
    """
    registry = bus.registry
    known = events if events is not None else [registry.class_of(n) for n in registry.names()]
    sent = list(dict.fromkeys(known))
    handled = [route.event_type for route in bus.routes if route.event_type is not None]
    classes = list(dict.fromkeys([*sent, *handled]))
    names = {cls: registry.name_of(cls) for cls in classes}
    addresses = [*sorted(names[cls] for cls in sent), *(route.topic for route in bus.routes)]
    keys = _Keys(names, addresses)
    payloads, schemas = payload_schemas(classes)
    found = servers(bus.url)
    kafka = any(server["protocol"] == "kafka" for server in found.values())

    operations: dict[str, Any] = {}
    for cls in sent:
        operations[_unique(f"send.{keys.messages[cls]}", operations)] = _send(keys, cls)
    for route in bus.routes:
        key = _unique(f"receive.{_key(route.name)}", operations)
        operations[key] = _receive(keys, route, kafka)
    messages = {
        keys.messages[cls]: {
            "name": names[cls],
            "title": cls.__qualname__,
            "contentType": bus.codec.content_type,
            "headers": {"$ref": f"#/components/schemas/{NAME}"},
            "payload": payloads[cls],
            "correlationId": CORRELATION,
        }
        for cls in classes
    }
    info = {"title": title, "version": version}
    if description is not None:
        info["description"] = description
    return {
        "asyncapi": VERSION,
        "info": info,
        **({"servers": found} if found else {}),
        "defaultContentType": bus.codec.content_type,
        "channels": {keys.channels[address]: _channel(keys, address) for address in keys.channels},
        "operations": operations,
        "components": {"schemas": {**schemas, NAME: HEADERS}, "messages": messages},
    }


class _Keys:
    """The component keys of a document's messages (by class) and channels (by address)."""

    def __init__(self, names: dict[type, str], addresses: Iterable[str]) -> None:
        self.names = names
        self.messages = dict(zip(names, _keys(names.values()), strict=True))
        unique = list(dict.fromkeys(addresses))
        self.channels = dict(zip(unique, _keys(unique), strict=True))

    def on(self, address: str) -> list[type]:
        """The event classes whose messages the channel of ``address`` carries."""
        return [cls for cls, name in self.names.items() if matches(address, name)]

    def ref(self, address: str, cls: type | None = None) -> dict[str, str]:
        """A reference to the channel of ``address``, or to its message for ``cls``."""
        channel = f"#/channels/{self.channels[address]}"
        return {"$ref": channel if cls is None else f"{channel}/messages/{self.messages[cls]}"}


def _channel(keys: _Keys, address: str) -> dict[str, Any]:
    messages = [keys.messages[cls] for cls in keys.on(address)]
    channel: dict[str, Any] = {
        "address": address,
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
    }
    if is_pattern(address):
        channel.update({"description": _PATTERN, "x-tidings-pattern": True})
    return channel


def _send(keys: _Keys, cls: type) -> dict[str, Any]:
    address = keys.names[cls]
    return {
        "action": "send",
        "channel": keys.ref(address),
        "messages": [keys.ref(address, cls)],
        "summary": f"Publishes {cls.__qualname__}.",
    }


def _receive(keys: _Keys, route: Route, kafka: bool) -> dict[str, Any]:
    """A route's operation: the messages of its event class, or all its channel's."""
    received: Sequence[type] = [route.event_type] if route.event_type else keys.on(route.topic)
    operation: dict[str, Any] = {
        "action": "receive",
        "channel": keys.ref(route.topic),
        "summary": f"{route.name} handles them in group {route.group}.",
        "x-tidings-group": route.group,
        "x-tidings-handler": route.name,
    }
    if received:  # none known: any message (AsyncAPI's meaning of no list)
        operation["messages"] = [keys.ref(route.topic, cls) for cls in received]
    if kafka:  # the Kafka transport's consumer group id is the group
        group = {"type": "string", "enum": [route.group]}
        operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": "0.5.0"}}
    return operation


def _key(name: str) -> str:
    """``name`` as a component key (letters, digits, ``.``, ``-``, ``_``)."""
    return _NOT_A_KEY.sub("_", name.replace("*", "_any_").replace(">", "_rest_"))


def _unique(key: str, taken: Iterable[str]) -> str:
    """``key``, or ``key-2``, ``key-3``… if taken."""
    number, unique = 1, key
    while unique in taken:
        number += 1
        unique = f"{key}-{number}"
    return unique


def _keys(names: Iterable[str]) -> list[str]:
    """A distinct key for each name, in order (two names may read the same as keys)."""
    keys: list[str] = []
    for name in names:
        keys.append(_unique(_key(name), keys))
    return keys
