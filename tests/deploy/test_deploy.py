"""``deploy/``: the Grafana dashboard and the Prometheus alert rules parse, pass ``promtool``, and
use only metrics a tidings worker's ``/metrics`` serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.ops.ops_worker import publish, signups, until_metrics, worker

import tidings.telemetry.metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "tidings-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tidings-dashboard.json"

PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself when it scrapes a target."""
PROMQL = {
    "and",
    "or",
    "unless",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "increase",
    "deriv",
    "histogram_quantile",
}
"""The PromQL functions and operators the files use; a name not here is taken for a metric."""


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    """Every PromQL expression of the rules, the panels and the dashboard's variables."""
    found = [rule["expr"] for group in rules()["groups"] for rule in group["rules"]]
    found += [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]
    found += [
        variable["definition"]
        for variable in dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]
    return found


def metric_names(expression: str) -> set[str]:
    """The series names ``expression`` selects: what remains once strings, label matchers,
    grouping clauses, ranges, functions and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\blabel_values\(\s*([^,)]+)[^)]*\)", r"\1", text)  # Grafana: metric, label
    text = re.sub(r"\[[^\]]*\]", "", text)
    return set(re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*", text)) - PROMQL


def documented_instruments() -> set[str]:
    """The instruments :mod:`tidings.telemetry.metrics` documents, as Prometheus spells them
    (dots become underscores)."""
    doc = tidings.telemetry.metrics.__doc__ or ""
    names = re.findall(r"^``([a-z_.]+)``\s+(?:counter|histogram|gauge)", doc, re.MULTILINE)
    assert names, "no instrument table in tidings.telemetry.metrics"
    return {name.replace(".", "_") for name in names}


def test_the_files_parse() -> None:
    assert rules()["groups"][0]["rules"]
    board = dashboard()
    assert board["uid"] == "tidings"
    titles = {panel["title"] for panel in board["panels"]}
    assert len(titles) == len(board["panels"]) >= 7


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not installed: it comes with Debian's prometheus package "
            "(apt-get install --no-install-recommends prometheus; `make test` installs it)",
            pytrace=False,
        )
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_every_metric_used_is_one_a_worker_serves(tmp_path: Path) -> None:
    """A worker that ran before (so that its groups exist and their lag is read at start)
    handles signups, one of them dead-lettered; every series the files use is then on its
    /metrics, and named after an instrument tidings documents."""
    url = f"sqlite:///{tmp_path}/events.db"
    async with worker(tmp_path, url) as first:
        assert await first.stop() == 0
    async with worker(tmp_path, url) as running:
        await publish(url, signups(2, invalid=1))
        await until_metrics(
            running,
            lambda s: "tidings_consumer_lag" in s and "tidings_dead_letters_total" in s,
            "the groups' lag and a dead letter",
        )
        status, body = await running.get("/metrics")
        assert status == 200
        assert await running.stop() == 0

    families = list(text_string_to_metric_families(body))
    served = {sample.name: family for family in families for sample in family.samples}
    used = set().union(*(metric_names(e) for e in expressions())) - PROMETHEUS_OWN
    assert used, "no metric found in the expressions"
    assert used <= served.keys(), f"not served by a worker: {sorted(used - served.keys())}"
    instruments = documented_instruments()
    for name in used:
        # A sample is its family's name plus the suffix of its kind; the family is the
        # instrument's name plus the unit (seconds) the exporter appends.
        family = served[name]
        assert name.removeprefix(family.name) in _SAMPLE_SUFFIXES[family.type], name
        assert family.name.removesuffix("_seconds") in instruments, name


_SAMPLE_SUFFIXES = {
    "counter": {"_total"},
    "gauge": {""},
    "histogram": {"_bucket", "_count", "_sum"},
}
