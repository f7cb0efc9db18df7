"""The AsyncAPI 3.0 document of a bus: what it sends, what it receives, where and in what shape."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tidings.asyncapi.headers import CORRELATION, HEADERS, NAME
from tidings.asyncapi.schemas import payload_schemas
from tidings.asyncapi.servers import servers
from tidings.topics import is_pattern, matches

if TYPE_CHECKING:
    from tidings.bus import Bus

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
    """
    registry = bus.registry
    sent = list(events) if events is not None else [registry.class_of(n) for n in registry.names()]
    handled = [route.event_type for route in bus.routes if route.event_type is not None]
    classes = list(dict.fromkeys([*sent, *handled]))
    names = {cls: registry.name_of(cls) for cls in classes}
    payloads, schemas = payload_schemas(classes)
    message_keys = _keys(names[cls] for cls in classes)
    message_of = dict(zip(classes, message_keys, strict=True))
    addresses = list(
        dict.fromkeys([*sorted(names[cls] for cls in sent), *(route.topic for route in bus.routes)])
    )
    channel_of = dict(zip(addresses, _keys(addresses), strict=True))
    found_servers = servers(bus.url)
    kafka = any(server["protocol"] == "kafka" for server in found_servers.values())

    channels: dict[str, Any] = {}
    for address, channel in channel_of.items():
        listed = [message_of[c] for c in classes if matches(address, names[c])]
        channels[channel] = {
            "address": address,
            "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in listed},
        }
        if is_pattern(address):
            channels[channel].update({"description": _PATTERN, "x-tidings-pattern": True})

    operations: dict[str, Any] = {}
    for cls in sent:
        channel = channel_of[names[cls]]
        operations[_unique(f"send.{message_of[cls]}", operations)] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message_of[cls]}"}],
            "summary": f"Publishes {cls.__qualname__}.",
        }
    for route in bus.routes:
        channel = channel_of[route.topic]
        keys = (
            [message_of[route.event_type]]
            if route.event_type
            else list(channels[channel]["messages"])
        )
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"{route.name} handles them in group {route.group}.",
            "x-tidings-group": route.group,
            "x-tidings-handler": route.name,
        }
        if keys:
            operation["messages"] = [{"$ref": f"#/channels/{channel}/messages/{k}"} for k in keys]
        if kafka:
            group = {"type": "string", "enum": [route.group]}
            operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": "0.5.0"}}
        operations[_unique(f"receive.{_key(route.name)}", operations)] = operation

    messages = {
        message_of[cls]: {
            "name": names[cls],
            "title": cls.__qualname__,
            "contentType": bus.codec.content_type,
            "headers": {"$ref": f"#/components/schemas/{NAME}"},
            "payload": payloads[cls],
            "correlationId": CORRELATION,
        }
        for cls in classes
    }
    info: dict[str, Any] = {"title": title, "version": version}
    if description is not None:
        info["description"] = description
    doc: dict[str, Any] = {"asyncapi": VERSION, "info": info}
    if found_servers:
        doc["servers"] = found_servers
    doc.update(
        defaultContentType=bus.codec.content_type,
        channels=channels,
        operations=operations,
        components={"schemas": {**schemas, NAME: HEADERS}, "messages": messages},
    )
    return doc


def _key(name: str) -> str:
    """``name`` as a component key (letters, digits, ``.``, ``-``, ``_``)."""
    return _NOT_A_KEY.sub("_", name.replace("*", "_any_").replace(">", "_rest_"))


def _unique(key: str, taken: dict[str, Any]) -> str:
    number = 1
    unique = key
    while unique in taken:
        number += 1
        unique = f"{key}-{number}"
    return unique


def _keys(names: Iterable[str]) -> list[str]:
    """A distinct key for each name, in order (two names may read the same as keys)."""
    taken: dict[str, None] = {}
    keys = []
    for name in names:
        key = _unique(_key(name), taken)
        taken[key] = None
        keys.append(key)
    return keys
