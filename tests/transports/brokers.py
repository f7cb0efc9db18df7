"""The real local services the transport tests talk to, and helpers to restart, probe and clean
them.

Plain helpers live here rather than in ``conftest.py`` so test modules import them by a name of
their own (``from brokers import NATS``), whatever other directories' conftests are loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import nats
import pytest
import redis.asyncio as redis

from tidings.message import Message
from tidings.testing.receiver import Receiver, opened
from tidings.transports import from_url
from tidings.transports.kit.partitions import partition_of
from tidings.transports.nats import NatsOptions


@dataclass(frozen=True)
class Service:
    name: str
    env: str
    default: str
    start: str
    ready: str
    """A shell command that exits 0 once the service accepts clients."""

    @property
    def url(self) -> str:
        return os.environ.get(self.env, self.default)

    def require(self) -> str:
        """The service's URL; fails the test when nothing listens there."""
        parts = urlsplit(self.url if "://" in self.url else f"tcp://{self.url}")
        host, port = parts.hostname or "127.0.0.1", parts.port
        assert port is not None, f"no port in {self.env}"
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError:
            pytest.fail(
                f"{self.name} is not reachable at {host}:{port}; start it with: {self.start}",
                pytrace=False,
            )
        return self.url


_PG_VERSION = "$(ls /etc/postgresql)"
POSTGRES = Service(
    "PostgreSQL",
    "TIDINGS_PG_DSN",
    "postgresql://postgres@127.0.0.1:5432/test",
    f"pg_ctlcluster --skip-systemctl-redirect {_PG_VERSION} main start",
    "pg_isready -q -h 127.0.0.1",
)
REDIS = Service(
    "Redis",
    "TIDINGS_REDIS_URL",
    "redis://127.0.0.1:6379/0",
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log",
    "redis-cli ping",
)
RABBITMQ = Service(
    "RabbitMQ",
    "TIDINGS_AMQP_URL",
    "amqp://guest:guest@127.0.0.1:5672/",
    "rabbitmq-server -detached",
    "rabbitmqctl -q await_startup",
)
NATS = Service(
    "NATS",
    "TIDINGS_NATS_URL",
    "nats://127.0.0.1:4222",
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
    "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    "true",
)


async def shell(command: str, *, timeout: float = 60.0) -> None:
    """Run ``command`` in a shell; fail the test with its output when it fails."""
    process = await asyncio.create_subprocess_shell(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    async with asyncio.timeout(timeout):
        output, _ = await process.communicate()
    if process.returncode:
        pytest.fail(f"{command!r} failed ({process.returncode}): {output.decode()[-2000:]}")


async def wait_ready(service: Service, *, timeout: float = 60.0) -> None:
    """Return once ``service.ready`` succeeds; probing again every 0.1s."""
    async with asyncio.timeout(timeout):
        while True:
            process = await asyncio.create_subprocess_shell(
                service.ready, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if await process.wait() == 0:
                return
            await asyncio.sleep(0.1)


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key this transport namespace created."""
    client = redis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def delete_streams(url: str, options: NatsOptions) -> None:
    """Delete the JetStream streams (messages, dead letters, leases) of these options."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for stream in (options.stream, options.dead_letter_stream, f"KV_{options.lease_bucket}"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await nc.close()


async def restart_postgres() -> None:
    """Restart the local PostgreSQL cluster quickly and wait until it accepts clients.

    Other test sessions on this machine lose their connections too, so callers keep it rare.
    """
    await shell(f"pg_ctlcluster --skip-systemctl-redirect {_PG_VERSION} main restart -m fast")
    await wait_ready(POSTGRES)


_HOLDER = """
import asyncio, sys
from tidings.transports import from_url

async def main(url, topic, group, count):
    transport = from_url(url)
    await transport.start()
    held = []
    async for batch in transport.subscribe(topic, group=group):
        held += batch
        if len(held) >= int(count):
            print("holding", len(held), flush=True)
            await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def held_messages_come_again(url: str) -> None:
    """Publish to the leased transport at ``url`` (with a short ``lease``); a consumer process
    takes the messages without settling them and is SIGKILLed: they must come again to its group,
    as second attempts, once their leases run out."""
    sent = [Message("item", b'{"n":%d}' % n, {"n": str(n)}) for n in range(5)]
    async with opened(lambda: from_url(url)) as transport:
        await transport.publish("jobs", sent)
        await _die_holding(url, "jobs", "workers", len(sent))
        receiver = Receiver(transport.subscribe("jobs", group="workers"))
        await receiver.until_ids([m.id for m in sent], "the dead consumer's messages")
        assert {d.attempt for d in receiver.deliveries} == {2}
        await receiver.aclose()


async def _die_holding(url: str, topic: str, group: str, count: int) -> None:
    """Run a consumer process that takes ``count`` deliveries without settling them, then SIGKILL
    it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, url, topic, group, str(count), stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        assert line.startswith(b"holding"), f"the holding consumer failed: {line!r}"
    finally:
        process.kill()
        await process.wait()


class Numbers:
    """A handler of ``{"n": …}`` payloads that records each ``n`` and sets ``done`` on ``last``."""

    def __init__(self, last: int = 9) -> None:
        self.last = last
        self.handled: list[int] = []
        self.done = asyncio.Event()

    def __call__(self, value: dict[str, int]) -> None:
        self.handled.append(value["n"])
        if value["n"] == self.last:
            self.done.set()


def one_per_partition(count: int) -> list[Message]:
    """A keyed message for each of ``count`` partitions."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < count:
        keys.setdefault(partition_of(f"key-{n}", count), f"key-{n}")
        n += 1
    return [Message("test.item", b"", key=key) for key in keys.values()]
