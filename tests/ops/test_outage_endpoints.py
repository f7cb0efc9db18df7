"""A worker's endpoints across a broker outage: ``tidings run APP --http`` on Redis and on NATS,
its bus reaching the broker through a :class:`~tidings.testing.faults.TcpProxy` that the test
cuts and restores (the shared broker keeps running).

/readyz answers 503 naming the broker and the three signup routes while the network is cut
(connections reset, or left unanswered), and 200 once it is back; /healthz stays 200 and
/metrics keeps answering; a signup published after the restore is handled by all three groups,
so the consumers outlived the outage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ops_worker import Worker, publish, samples, signups, total, until_metrics, worker
from tests.transports.brokers import NATS, REDIS, delete_prefix, delete_streams

from tidings.examples.signup.app import AUDIT_GROUP, EMAIL_GROUP, PREFERENCES_GROUP
from tidings.testing.faults import TcpProxy
from tidings.testing.receiver import waiting
from tidings.transports.nats import NatsOptions

CONSUMED = "messaging_client_consumed_messages_total"
GROUPS = {EMAIL_GROUP, AUDIT_GROUP, PREFERENCES_GROUP}


@pytest.fixture(params=["redis", "nats"])
async def broker_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A namespace of this test's own on the shared Redis or NATS, removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    if request.param == "redis":
        url = REDIS.require()
        yield f"{url}?prefix=outage{tag}"
        await delete_prefix(url, f"outage{tag}")
    else:
        url = NATS.require()
        named = f"{url}?stream=OUTAGE{tag}&prefix=outage{tag}"
        yield named
        await delete_streams(url, NatsOptions.from_url(named))


async def readyz_until(running: Worker, status: int) -> dict[str, Any]:
    """Probe /readyz as an orchestrator does until it answers ``status``; its body then."""
    async with waiting(60, f"/readyz to answer {status}"):
        while True:
            got, body = await running.get_json("/readyz")
            assert got in (200, 503), body  # never an error of the endpoint itself
            if got == status:
                assert isinstance(body, dict)
                return body
            await asyncio.sleep(0.1)  # the probe's period: nothing to await between probes


async def still_alive(running: Worker) -> None:
    assert await running.get_json("/healthz") == (200, {"alive": True})
    await samples(running)  # /metrics answers 200 with a body Prometheus parses


@pytest.mark.parametrize("hold", [False, True], ids=["reset", "silent"])
async def test_readyz_across_an_outage(tmp_path: Path, broker_url: str, hold: bool) -> None:
    """With ``hold``, connections made during the outage get no answer (a probe times out)."""
    upstream = urlsplit(broker_url)
    assert upstream.hostname is not None
    assert upstream.port is not None
    async with TcpProxy(upstream.hostname, upstream.port) as proxy:
        url = proxy.redirect(broker_url)
        async with worker(tmp_path, url) as running:
            ready = await readyz_until(running, 200)
            assert ready["broker"] == "ok"
            await publish(url, signups(2))
            await until_metrics(
                running, lambda s: total(s, CONSUMED, tidings_outcome="ok") == 2 * 3, "2 signups"
            )

            await proxy.cut(hold=hold)
            first = await readyz_until(running, 503)
            again = await readyz_until(running, 503)  # the client tries a new connection
            for down in (first, again):
                assert down["ready"] is False
                assert down["broker"].startswith("unreachable"), down
                assert proxy.address in down["broker"], down
                assert {route["group"] for route in down["routes"]} == GROUPS
            await still_alive(running)

            await proxy.restore()
            up = await readyz_until(running, 200)
            assert up["broker"] == "ok"
            assert {route["state"] for route in up["routes"]} == {"running"}
            await still_alive(running)

            await publish(url, signups(1))
            await until_metrics(
                running,
                lambda s: total(s, CONSUMED, tidings_outcome="ok") == 3 * 3,
                "the signup sent after the restore handled by the three groups",
            )
            assert await running.stop() == 0
