"""``tidings run APP --otlp URL``: spans and metrics reach an OTLP/HTTP collector."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from ops_worker import publish, signups, total, until_metrics, worker


class Collector:
    """What an OTLP/HTTP collector on 127.0.0.1 received: the protobuf bodies by path."""

    def __init__(self) -> None:
        self.received: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": []}

    async def handle(self, request: web.Request) -> web.Response:
        self.received[request.path].append(await request.read())
        return web.Response(content_type="application/x-protobuf")

    def span_names(self) -> set[str]:
        names = set()
        for body in self.received["/v1/traces"]:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                for scope in resource.scope_spans:
                    names |= {span.name for span in scope.spans}
        return names

    def metric_names(self) -> set[str]:
        names = set()
        for body in self.received["/v1/metrics"]:
            for resource in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope in resource.scope_metrics:
                    names |= {metric.name for metric in scope.metrics}
        return names


@asynccontextmanager
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    """A collector and its base URL."""
    received = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", received.handle)
    app.router.add_post("/v1/metrics", received.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield received, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_spans_and_metrics_reach_the_collector(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with (
        collector() as (received, endpoint),
        worker(tmp_path, url, "--otlp", endpoint) as running,
    ):
        await publish(url, signups(2))
        await until_metrics(
            running,
            lambda s: (
                total(s, "messaging_client_consumed_messages_total", tidings_outcome="ok") == 6
            ),
            "both signups handled by the three groups",
        )
        assert await running.stop() == 0  # the worker flushes what it buffered when it stops

        assert "process user.signed_up" in received.span_names()
        assert {
            "messaging.client.consumed.messages",
            "messaging.process.duration",
            "tidings.message.latency",
        } <= received.metric_names()


async def test_the_standard_variables_turn_otlp_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with collector() as (received, endpoint):
        variables = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "signups"}
        async with worker(tmp_path, url, env=variables) as running:
            await publish(url, signups(1))
            await until_metrics(
                running,
                lambda s: total(s, "messaging_client_consumed_messages_total") == 3,
                "the signup handled by the three groups",
            )
            assert await running.stop() == 0

        assert "process user.signed_up" in received.span_names()
        services = {
            attribute.value.string_value
            for body in received.received["/v1/traces"]
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }
        assert services == {"signups"}
