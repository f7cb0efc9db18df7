"""``tidings run APP --http HOST:PORT``: /healthz, /readyz and /metrics of a real worker process."""

from __future__ import annotations

from pathlib import Path

from ops_worker import publish, signups, total, until_metrics, worker
from typer.testing import CliRunner

from tidings.cli import app


async def test_health_readiness_and_metrics_of_a_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with worker(tmp_path, url) as running:
        assert await running.get_json("/healthz") == (200, {"alive": True})
        status, ready = await running.get_json("/readyz")
        assert status == 200, ready
        assert ready["ready"] is True
        assert ready["broker"] == "ok"
        assert {r["group"] for r in ready["routes"]} == {
            "signup.email",
            "signup.audit",
            "signup.preferences",
        }

        await publish(url, signups(3, invalid=1))
        consumed = "messaging_client_consumed_messages_total"
        found = await until_metrics(
            running,
            lambda s: (
                total(s, consumed, tidings_outcome="ok") == 3 * 3 + 2
                and total(s, "tidings_dead_letters_total") == 1
            ),
            "every signup handled by the three groups and the bad address dead-lettered",
        )

        email = {"messaging_consumer_group_name": "signup.email"}
        assert total(found, consumed, tidings_outcome="ok", **email) == 3
        assert total(found, consumed, tidings_outcome="dead_lettered", **email) == 1
        assert total(found, "tidings_dead_letters_total", error_type="InvalidAddress") == 1
        # one handler call per message and group, and one more per retry (a busy mail server)
        retried = total(found, consumed, tidings_outcome="retried")
        assert total(found, "messaging_process_duration_seconds_count") == 12 + retried
        assert total(found, "tidings_message_latency_seconds_count") == 12 + retried
        up = found["tidings_consumer_up"]
        assert len(up) == 3
        assert all(value == 1 for _, value in up)
        buckets = {labels["le"] for labels, _ in found["messaging_process_duration_seconds_bucket"]}
        assert {"0.0005", "30.0", "+Inf"} <= buckets  # tidings' seconds buckets, not the SDK's

        assert await running.stop() == 0


OWN_PROVIDER = """
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider

from tidings.examples.signup.app import create_bus

metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
bus = create_bus()
"""


async def test_an_application_s_own_meter_provider_is_kept(tmp_path: Path) -> None:
    """The worker sets up no provider over the application's, says so, and /metrics serves
    what the application's Prometheus reader holds: tidings' metrics, in the SDK's buckets."""
    (tmp_path / "own_provider.py").write_text(OWN_PROVIDER)
    url = f"sqlite:///{tmp_path}/events.db"
    async with worker(tmp_path, url, app="own_provider:bus") as running:
        assert any("set its own MeterProvider" in line for line in running.news)
        await publish(url, signups(1))
        found = await until_metrics(
            running,
            lambda s: total(s, "messaging_client_consumed_messages_total") == 3,
            "the signup handled by the three groups",
        )
        buckets = {labels["le"] for labels, _ in found["messaging_process_duration_seconds_bucket"]}
        assert "0.0005" not in buckets  # the application chose no views
        assert await running.stop() == 0


def test_a_malformed_address_is_refused() -> None:
    result = CliRunner().invoke(
        app, ["run", "tidings.examples.signup.app:create_bus", "--http", "9464"]
    )
    assert result.exit_code == 2
    assert "expected HOST:PORT" in result.output
