"""The conformance suite on the Redis Streams transport (the local redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_redis import delete_prefix, restart_redis, unique_prefix

from tidings.testing.receiver import TransportFactory
from tidings.testing.transport_suite import RestartService, TransportSuite
from tidings.transports.redis import RedisOptions, RedisTransport


class TestRedisTransport(TransportSuite):
    @pytest.fixture
    async def transport_factory(self, redis_url: str) -> AsyncIterator[TransportFactory]:
        prefix = unique_prefix()
        # A short lease: what a closed or crashed subscriber held comes again within a second.
        options = RedisOptions.from_url(f"{redis_url}?prefix={prefix}&lease=1")
        yield lambda: RedisTransport(options)
        await delete_prefix(redis_url, prefix)

    @pytest.fixture
    def restart_service(self, redis_url: str) -> RestartService:
        return lambda: restart_redis(redis_url)
