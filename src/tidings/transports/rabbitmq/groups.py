"""The consumer groups on RabbitMQ: a group's subscription to a topic (or pattern) is its queue.

AMQP cannot enumerate queues, so :func:`list_groups` asks the management HTTP API (the
``rabbitmq_management`` plugin; see ``RabbitMQOptions.management_url``) for the bindings of the
transport's exchange and of its exchange of keyed messages: each group's binding names its
group and topic (see :mod:`tidings.transports.rabbitmq.wire`), and a group's queues of one
topic (the topic's and its partitions') are listed as one. A queue bound before bindings
carried those names is listed once a subscription of this version declared it again.

A group's lag is its queue's messages: those ready, counted exactly over AMQP, plus those handed
out and not acknowledged, which only the management API's statistics know; RabbitMQ refreshes
them every few seconds (``collect_statistics_interval``, 5 s by default), so a fresh count of
messages in flight may lag behind. Before the first statistics of a queue, ``in_flight`` is
None. RabbitMQ keeps no time of a consumer's last fetch: ``last_active`` is None.

Dropping deletes the group's queues, and only while nobody consumes from it: a running consumer
would otherwise keep receiving nothing from a queue that no longer exists. (Quorum queues refuse
``if-unused`` deletes, so the consumers are counted just before: one that starts in between
loses its queue and its subscription ends with a TransportError.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiormq.exceptions import ChannelNotFoundEntity

from tidings.errors import NotFound, ServiceUnavailable, TransportError
from tidings.transports.base import GroupInfo
from tidings.transports.kit.errors import ErrorMap
from tidings.transports.kit.partitions import merge_groups
from tidings.transports.rabbitmq.options import RabbitMQOptions
from tidings.transports.rabbitmq.wire import GROUP, TOPIC, group_bindings, partitioned_exchange
from tidings.urls import redact

if TYPE_CHECKING:
    from aiormq import Channel

__all__ = ["Management", "drop_group", "list_groups"]

OpenChannel = Callable[[], Awaitable["Channel"]]


class Management:
    """The RabbitMQ management HTTP API, as far as ``groups()`` needs it (JSON over stdlib
    ``urllib``, in a worker thread). Raises ServiceUnavailable when it cannot be reached."""

    def __init__(self, options: RabbitMQOptions) -> None:
        self.base, user, password, vhost = options.management()
        self.vhost = quote(vhost, safe="")
        self._timeout = options.connect_timeout
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._authorization = f"Basic {token}"

    async def get(self, path: str) -> Any:
        """The JSON at ``path`` (below ``/api/``); None for a 404."""
        return await asyncio.to_thread(self._get, path)

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": self._authorization}
        )
        where = redact(self.base)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code in (401, 403):
                raise TransportError(
                    f"the RabbitMQ management API at {where} refused the login ({exc.code}): "
                    "its user needs the monitoring tag, or pass management_url with one that has"
                ) from exc
            raise TransportError(f"the RabbitMQ management API at {where} failed: {exc}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServiceUnavailable(
                f"the RabbitMQ management API is not reachable at {where} ({exc}): listing "
                "groups needs it; enable it (rabbitmq-plugins enable rabbitmq_management) or "
                "pass management_url"
            ) from exc


async def list_groups(
    management: Management, exchange: str, open_channel: OpenChannel, errors: ErrorMap
) -> list[GroupInfo]:
    """Every group's subscription to a topic on ``exchange``, sorted by topic then group."""
    vhost = management.vhost
    named: dict[str, tuple[str, str]] = {}  # queue -> (topic, group)
    for source in (exchange, partitioned_exchange(exchange)):
        bindings = await management.get(
            f"exchanges/{vhost}/{quote(source, safe='')}/bindings/source"
        )
        for binding in bindings or ():
            arguments = binding.get("arguments") or {}
            if binding.get("destination_type") == "queue" and GROUP in arguments:
                topic, group = str(arguments.get(TOPIC)), str(arguments[GROUP])
                named[binding["destination"]] = (topic, group)
    if not named:
        return []
    stats = await management.get(f"queues/{vhost}?columns=name,messages_unacknowledged")
    unacked = {queue["name"]: queue.get("messages_unacknowledged") for queue in stats or ()}
    ready = await _ready_counts(sorted(named), open_channel, errors)
    groups = []
    for queue, count in ready.items():
        topic, group = named[queue]
        in_flight = unacked.get(queue)
        groups.append(GroupInfo(topic, group, count + (in_flight or 0), in_flight, None))
    return merge_groups(groups)


async def _ready_counts(
    queues: list[str], open_channel: OpenChannel, errors: ErrorMap
) -> dict[str, int]:
    """The messages ready in each of ``queues`` that still exists."""
    counts: dict[str, int] = {}
    channel = await open_channel()
    try:
        with errors.mapping("listing the groups"):
            for queue in queues:
                try:
                    declared = await channel.queue_declare(queue, passive=True)
                except ChannelNotFoundEntity:  # deleted meanwhile; the broker closed the channel
                    await channel.close()
                    channel = await open_channel()
                    continue
                counts[queue] = declared.message_count or 0
    finally:
        await channel.close()
    return counts


async def drop_group(
    exchange: str,
    topic: str,
    group: str,
    partitions: int,
    open_channel: OpenChannel,
    errors: ErrorMap,
) -> None:
    """Delete the queues of ``group``'s subscription to ``topic`` (the topic's and each of
    ``partitions``'). Raises NotFound if there are none, TransportError while they have
    consumers."""
    queues = [binding.queue for binding in group_bindings(exchange, group, topic, partitions)]
    channel = await open_channel()
    try:
        with errors.mapping(f"dropping {group!r}"):
            existing = []
            for queue in queues:
                try:
                    declared = await channel.queue_declare(queue, passive=True)
                except ChannelNotFoundEntity:  # the broker closed the channel
                    await channel.close()
                    channel = await open_channel()
                    continue
                if declared.consumer_count:
                    raise TransportError(
                        f"the group {group!r} on {topic!r} has {declared.consumer_count} "
                        "consumers: stop them first"
                    )
                existing.append(queue)
            if not existing:
                raise NotFound(f"no group {group!r} on {topic!r}")
            for queue in existing:
                await channel.queue_delete(queue)
    finally:
        await channel.close()
