"""``tidings demo``: the signup flow end to end: embedded default, in memory, on brokers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import Result

Invoke = Callable[..., Result]

INVALID_IN_1000 = 4  # users 250, 500, 750 and 1000 have no "@" in their address
RETRIED_IN_1000 = 142  # every 7th user's first mail fails once


def summary_of(cli: Invoke, *args: str) -> dict[str, Any]:
    result = cli("demo", "--json", *args)
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = msgspec.json.decode(result.stdout)
    return summary


def assert_every_signup_handled(summary: dict[str, Any], count: int) -> None:
    invalid = count // 250
    assert summary["complete"] is True
    assert summary["handled"] == {"email": count - invalid, "audit": count, "preferences": count}
    assert summary["retried"] == count // 7
    assert summary["dead_lettered"] == invalid
    assert summary["reasons"] == [
        {
            "service": "email",
            "error_type": "tidings.examples.signup.services.InvalidAddress",
            "error_message": "the address has no '@'",
            "count": invalid,
        }
    ]
    assert summary["elapsed_seconds"] > 0
    assert summary["events_per_second"] > 0


def test_demo_handles_1000_signups_on_the_embedded_sqlite_default(
    cli: Invoke, demo_tmp: Path
) -> None:
    summary = summary_of(cli)

    assert_every_signup_handled(summary, 1000)
    assert summary["retried"] == RETRIED_IN_1000
    assert summary["dead_lettered"] == INVALID_IN_1000
    assert summary["transport"] == "SqliteTransport"
    directory = Path(summary["directory"])
    assert directory.parent == demo_tmp
    assert summary["url"] == f"sqlite:///{directory / 'signup.db'}"


def test_demo_leaves_its_dead_letters_for_the_dlq_command(cli: Invoke, demo_tmp: Path) -> None:
    summary = summary_of(cli, "--count", "500")

    listed = cli("dlq", "list", "--json", "--url", summary["url"])

    letters = msgspec.json.decode(listed.stdout)
    assert sorted(letter["data"]["user_id"] for letter in letters) == [250, 500]
    assert {letter["group"] for letter in letters} == {"signup.email"}


def test_demo_runs_in_memory(cli: Invoke, demo_tmp: Path) -> None:
    summary = summary_of(cli, "--url", "memory://")

    assert_every_signup_handled(summary, 1000)
    assert summary["transport"] == "MemoryTransport"


def test_demo_prints_a_summary_table_with_the_reasons(cli: Invoke, demo_tmp: Path) -> None:
    result = cli("demo", "--count", "260")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "260 signups on SqliteTransport" in out
    for service, handled in (("email", "259"), ("audit", "260"), ("preferences", "260")):
        assert any(service in line and handled in line for line in out.splitlines()), out
    assert "retried 37 · dead-lettered 1" in out
    assert "InvalidAddress: the address has no '@'" in out
    assert "tidings dlq list --url sqlite:///" in out


def test_demo_ends_with_the_trace_of_one_publish(
    cli: Invoke, demo_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one line per span

    result = cli("demo", "--count", "260")

    assert result.exit_code == 0, result.output
    tree = result.stdout[result.stdout.index("the trace of one publish") :]
    assert "send user.signed_up · 60 messages" in tree  # users 201 to 260, in one publish
    retried, dead = tree.split("user 250 (dead-lettered)")
    assert "user 203 (retried)" in retried
    for group in ("signup.email", "signup.audit", "signup.preferences"):
        assert f"process user.signed_up · {group} · attempt 1" in retried
        assert f"process user.signed_up · {group} · attempt 1" in dead
    assert "MailServerBusy: 421 mail server busy" in retried
    assert "signup.email · attempt 2" in retried
    assert "event dead_lettered: InvalidAddress: the address has no '@'" in dead
    assert "58 more messages" in dead


def test_demo_without_the_opentelemetry_sdk_says_why_there_is_no_trace(
    cli: Invoke, demo_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delitem(sys.modules, "tidings.cli.demo_trace", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed

    result = cli("demo", "--count", "10")

    assert result.exit_code == 0, result.output
    assert "10 signups on SqliteTransport" in result.stdout
    assert "the trace of one publish" not in result.stdout
    (note,) = [line for line in result.stdout.splitlines() if "no trace" in line]
    assert "pip install 'tidings[otel]'" in note


def test_demo_runs_unchanged_on_a_broker(cli: Invoke, demo_tmp: Path, broker_url: str) -> None:
    summary = summary_of(cli, "--url", broker_url, "--count", "300", "--timeout", "60")

    assert_every_signup_handled(summary, 300)


def test_demo_on_an_unreachable_broker_fails_without_showing_the_password(
    cli: Invoke, demo_tmp: Path
) -> None:
    result = cli("demo", "--url", "redis://:hunter2@127.0.0.1:1/0?timeout=1", "--count", "10")

    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert "hunter2" not in result.output


@pytest.mark.parametrize("option", ["--count=0", "--timeout=0"])
def test_demo_refuses_nonsense_options(cli: Invoke, option: str) -> None:
    assert cli("demo", option).exit_code == 2


def test_demo_bank_rebuilds_the_account_in_another_process(cli: Invoke, tmp_path: Path) -> None:
    result = cli("demo", "bank", "--url", f"sqlite:///{tmp_path}/bank.db")

    assert result.exit_code == 0, result.output
    assert "rebuilt from its events" in result.stdout


def assert_shared_by_workers(summary: dict[str, Any], workers: int) -> None:
    by_worker = summary["handled_by_worker"]
    assert summary["workers"] == workers
    assert sorted(by_worker) == [str(n) for n in range(1, workers + 1)]
    for service, handled in summary["handled"].items():
        # a redelivered signup counts again in its worker's column
        assert sum(counts[service] for counts in by_worker.values()) >= handled
    assert all(sum(counts.values()) > 0 for counts in by_worker.values()), by_worker


def test_demo_runs_its_services_in_worker_processes_on_sqlite(cli: Invoke, demo_tmp: Path) -> None:
    summary = summary_of(cli, "--workers", "2", "--count", "500", "--timeout", "60")

    assert_every_signup_handled(summary, 500)
    assert_shared_by_workers(summary, 2)
    assert summary["transport"] == "SqliteTransport"
    assert (Path(summary["directory"]) / "workers.log").is_file()


@pytest.mark.parametrize("broker_url", ["nats"], indirect=True)
def test_demo_runs_its_services_in_worker_processes_on_a_broker(
    cli: Invoke, demo_tmp: Path, broker_url: str
) -> None:
    summary = summary_of(cli, "--url", broker_url, "--workers", "3", "--count", "500")

    assert_every_signup_handled(summary, 500)
    assert_shared_by_workers(summary, 3)


def test_demo_prints_what_each_worker_handled(cli: Invoke, demo_tmp: Path) -> None:
    result = cli("demo", "--workers", "2", "--count", "100", "--timeout", "60")

    assert result.exit_code == 0, result.output
    table = result.stdout[result.stdout.index("handled per worker process") :]
    table = table[: table.index("└")]
    rows = [line.split("│")[1:5] for line in table.splitlines() if line.startswith("│")]
    assert [worker.strip() for worker, *_ in rows] == ["1", "2"]
    assert sum(int(audit) for _, _, audit, _ in rows) >= 100
    assert "the workers' output:" in result.stdout


def test_demo_refuses_worker_processes_in_memory(cli: Invoke) -> None:
    result = cli("demo", "--url", "memory://", "--workers", "2")

    assert result.exit_code == 2
    assert "not memory://" in result.output
