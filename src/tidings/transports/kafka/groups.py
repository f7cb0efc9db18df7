"""The consumer groups on Kafka: tidings' groups are Kafka consumer groups of the same name.

A Kafka group spans topics; it is listed once per topic it has committed offsets on. Its lag on
a topic is, over the topic's partitions, the end offset less the committed one (less the
beginning offset where it committed nothing: a new group starts at the earliest record). Kafka
keeps no in-flight count or activity time for a group: those are None.

Dropping deletes the Kafka group (DeleteGroups), so only a group whose offsets are all on the
given topic can be dropped; Kafka refuses while the group has members. A stale group holds no
records on Kafka (retention is by time or size), only its offsets, which Kafka also expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from tidings.errors import NotFound, ServiceUnavailable, TransportError
from tidings.transports.base import GroupInfo

__all__ = ["drop_group", "list_groups"]

_GROUP_ID_NOT_FOUND = 69
_NON_EMPTY_GROUP = 68


async def _partitions(
    settings: dict[str, Any], exclude: str
) -> tuple[list[Any], dict[Any, tuple[int, int]]]:
    """Every partition of the topics (but ``exclude`` and internal ones) with its first and
    next offsets: (partitions, {partition: (start, end)})."""
    # A fetch's high watermark is the end: tansu answers ListOffsets "latest" wrongly for
    # batches of records. One small fetch from the start of every partition tells it.
    probe = AIOKafkaConsumer(
        enable_auto_commit=False, max_partition_fetch_bytes=1, fetch_max_wait_ms=10, **settings
    )
    await probe.start()
    try:
        topics = sorted(t for t in await probe.topics() if t != exclude and not t.startswith("__"))
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(probe.partitions_for_topic(t) or ())
        ]
        if not tps:
            return [], {}
        starts = await probe.beginning_offsets(tps)
        probe.assign(tps)
        for tp in tps:
            probe.seek(tp, starts[tp])
        try:
            async with asyncio.timeout(settings["request_timeout_ms"] / 1000):
                while any(probe.highwater(tp) is None for tp in tps):
                    await probe.getmany(timeout_ms=100)
        except TimeoutError:
            unknown = [str(tp) for tp in tps if probe.highwater(tp) is None]
            raise ServiceUnavailable(f"no end offset came for {', '.join(unknown)}") from None
        return tps, {tp: (starts[tp], probe.highwater(tp)) for tp in tps}
    finally:
        await probe.stop()


async def _committed(admin: Any, group: str, tps: Sequence[Any]) -> dict[str, dict[Any, int]]:
    """The group's committed offsets, by topic; topics it committed nothing on are left out."""
    by_topic: dict[str, dict[Any, int]] = {}
    if not tps:
        return by_topic
    # partitions named: tansu cannot answer the "all partitions" form of OffsetFetch
    offsets = await admin.list_consumer_group_offsets(group, partitions=list(tps))
    for tp, committed in offsets.items():
        if committed.offset >= 0:
            by_topic.setdefault(tp.topic, {})[tp] = committed.offset
    return by_topic


async def _delete_group(settings: dict[str, Any], coordinator: int, group: str) -> Any:
    """The response of the group's coordinator to DeleteGroups for ``group``."""
    # aiokafka's admin client has no method for DeleteGroups: its request goes through a
    # client of its own, by aiokafka's public request API
    client = AIOKafkaClient(**settings)
    try:
        await client.bootstrap()
        return await client.send(coordinator, DeleteGroupsRequest([group]))
    finally:
        await client.close()


async def list_groups(admin: Any, settings: dict[str, Any], exclude: str) -> list[GroupInfo]:
    """Every consumer group on every topic it committed offsets on, sorted by topic then
    group; ``admin`` is a started AIOKafkaAdminClient, ``settings`` the client settings."""
    names = sorted(name for name, _ in await admin.list_consumer_groups())
    if not names:
        return []
    tps, bounds = await _partitions(settings, exclude)
    groups = []
    for name in names:
        for topic, committed in (await _committed(admin, name, tps)).items():
            lag = sum(
                bounds[tp][1] - committed.get(tp, bounds[tp][0]) for tp in tps if tp.topic == topic
            )
            groups.append(GroupInfo(topic, name, max(lag, 0), None, None))
    return sorted(groups, key=lambda info: (info.topic, info.group))


async def drop_group(
    admin: Any, settings: dict[str, Any], exclude: str, topic: str, group: str
) -> None:
    """Delete the Kafka group ``group`` if its offsets are on ``topic`` alone; raises NotFound,
    TransportError while it has members or offsets on other topics."""
    tps, _ = await _partitions(settings, exclude)
    committed = await _committed(admin, group, tps)
    if topic not in committed:
        raise NotFound(f"no group {group!r} on {topic!r}")
    others = sorted(set(committed) - {topic})
    if others:
        raise TransportError(
            f"the Kafka group {group!r} also reads {', '.join(map(repr, others))}: a Kafka group "
            "is dropped as a whole; stop its consumers and drop it with Kafka's own tools"
        )
    coordinator = await admin.find_coordinator(group)
    for _, code in (await _delete_group(settings, coordinator, group)).results:
        if code == _GROUP_ID_NOT_FOUND:
            raise NotFound(f"no group {group!r} on {topic!r}")
        if code == _NON_EMPTY_GROUP:
            raise TransportError(f"the Kafka group {group!r} has members: stop its consumers first")
        if code:
            raise for_code(code)()
