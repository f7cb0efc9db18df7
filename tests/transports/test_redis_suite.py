"""The conformance suite on the Redis Streams transport (the local redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from brokers import delete_prefix
from test_redis import restart_redis, unique_prefix

from tidings.testing.receiver import TransportFactory
from tidings.testing.suite_foreign import ForeignPublish
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.redis import RedisOptions, RedisTransport

_FIELDS = {"tidings-id": "id", "tidings-type": "type", "tidings-key": "key", "tidings-time": "time"}


class TestRedisTransport(TransportSuite):
    @pytest.fixture
    async def redis_options(self, redis_url: str) -> AsyncIterator[RedisOptions]:
        prefix = unique_prefix()
        # A short lease: what a closed or crashed subscriber held comes again within a second.
        yield RedisOptions.from_url(f"{redis_url}?prefix={prefix}&lease=1")
        await delete_prefix(redis_url, prefix)

    @pytest.fixture
    def transport_factory(self, redis_options: RedisOptions) -> TransportFactory:
        return lambda: RedisTransport(redis_options)

    @pytest.fixture
    def scale_url(self, redis_url: str, redis_options: RedisOptions) -> str:
        # Six partitions: two for each of three workers. With sixteen, 90 keys hash so unevenly
        # that a worker holding the five smallest partitions gets 11% of them (the cases ask 15%).
        return f"{redis_url}?prefix={redis_options.prefix}&lease=2&partitions=6"

    @pytest.fixture
    def restart_service(self, redis_url: str) -> RestartService:
        return lambda: restart_redis(redis_url)

    @pytest.fixture
    async def foreign_publish(
        self, redis_url: str, redis_options: RedisOptions
    ) -> AsyncIterator[ForeignPublish]:
        """Entries added with redis-py's XADD: envelope headers as tidings' own fields, the
        others as fields of their own."""
        client = redis.Redis.from_url(redis_url)

        async def publish(topic: str, data: bytes, headers: dict[str, bytes]) -> None:
            fields: dict[Any, Any] = {_FIELDS.get(k, k): v for k, v in headers.items()}
            fields["data"] = data
            await client.xadd(f"{redis_options.prefix}:topic:{topic}", fields)

        yield publish
        await client.aclose()
