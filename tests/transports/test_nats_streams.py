"""NATS JetStream: streams made before partitions existed (without the partition subjects)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from tidings.errors import TransportError
from tidings.message import Message
from tidings.transports.nats import NatsOptions, NatsTransport

WAIT = 20.0


@pytest.fixture
async def options(nats_url: str) -> AsyncIterator[NatsOptions]:
    """Options naming a stream and subject prefix of this test only; deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    options = NatsOptions.from_url(f"{nats_url}?stream=T{tag}&prefix=t{tag}&storage=memory")
    yield options
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for stream in (options.stream, options.dead_letter_stream, f"KV_{options.lease_bucket}"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await nc.close()


async def make_stream(url: str, name: str, subjects: list[str]) -> None:
    """Create the stream ``name`` on ``subjects``, as an earlier version (or a person) did."""
    nc = await nats.connect(url)
    try:
        config = StreamConfig(name=name, subjects=subjects, storage=StorageType.MEMORY)
        await nc.jetstream().add_stream(config)
    finally:
        await nc.close()


async def subjects_of(url: str, name: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(name)
    finally:
        await nc.close()
    return list(info.config.subjects or [])


async def test_a_stream_without_partition_subjects_gets_them_and_keyed_messages_arrive(
    nats_url: str, options: NatsOptions
) -> None:
    old = [f"{options.prefix}.>"]
    await make_stream(nats_url, options.stream, old)
    await make_stream(nats_url, options.dead_letter_stream, [f"{options.dead_letter_prefix}.>"])
    transport = NatsTransport(options)
    try:
        sent = [Message("orders.placed", b"%d" % n, key=f"key-{n % 5}") for n in range(20)]
        await transport.publish("orders.placed", sent)
        got: list[Message] = []
        async with asyncio.timeout(WAIT):
            async for batch in transport.subscribe("orders.placed", group="g"):
                for delivery in batch:
                    got.append(delivery.message)
                    await delivery.ack()
                if len(got) >= len(sent):
                    break
    finally:
        await transport.aclose()

    assert sorted(m.id for m in got) == sorted(m.id for m in sent)
    assert f"{options.partition_prefix}.>" in await subjects_of(nats_url, options.stream)
    assert old[0] in await subjects_of(nats_url, options.stream)


async def test_a_stream_that_cannot_take_the_partition_subjects_is_refused_with_what_to_do(
    nats_url: str, options: NatsOptions
) -> None:
    # another stream already holds the partition subjects: JetStream refuses the overlap
    other = f"{options.stream}_OTHER"
    await make_stream(nats_url, options.stream, [f"{options.prefix}.>"])
    await make_stream(nats_url, other, [f"{options.partition_prefix}.>"])
    transport = NatsTransport(options)
    try:
        with pytest.raises(TransportError) as raised:
            await transport.start()
    finally:
        await transport.aclose()
        nc = await nats.connect(nats_url)
        await nc.jetstream().delete_stream(other)
        await nc.close()

    assert options.stream in str(raised.value)
    assert f"{options.partition_prefix}.>" in str(raised.value)
