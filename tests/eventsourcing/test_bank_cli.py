"""``tidings store``, ``tidings projections`` and the bank demo, on a SQLite file."""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tidings.cli import projections, store
from tidings.cli.demo_bank import run_bank_demo
from tidings.eventsourcing import Repository
from tidings.eventsourcing.store import EventStore
from tidings.examples.bank.account import Account

APP = ["--app", "tidings.examples.bank.projections:projections"]
runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with two accounts: acc-1 (3 events) and acc-2 (2 events)."""
    url = f"sqlite:///{tmp_path / 'events.db'}"

    async def seed() -> None:
        async with EventStore(url) as events:
            accounts = Repository(events, Account)
            for id, moves in (("acc-1", ["10", "-4"]), ("acc-2", ["5"])):
                account = Account(id)
                account.open("Jane")
                for move in map(Decimal, moves):
                    (account.deposit if move > 0 else account.withdraw)(abs(move))
                await accounts.save(account)

    asyncio.run(seed())
    return url


def json_of(args: list[str], app: object = store.app) -> object:
    result = runner.invoke(app, [*args, "--json"])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return msgspec.json.decode(result.stdout)


def test_streams_lists_each_stream_with_its_version(url: str) -> None:
    assert json_of(["streams", "--url", url]) == [
        {"stream": "acc-1", "version": 3, "deleted": False, "metadata": {}},
        {"stream": "acc-2", "version": 2, "deleted": False, "metadata": {}},
    ]
    table = runner.invoke(store.app, ["streams", "--url", url]).stdout
    assert "acc-1" in table
    assert "2 streams" in table


def test_read_prints_a_streams_events_with_their_payloads(url: str) -> None:
    events = json_of(["read", "acc-1", "--url", url])
    assert isinstance(events, list)
    assert [(e["version"], e["type"], e["data"]) for e in events] == [
        (1, "bank.account_opened", {"owner": "Jane"}),
        (2, "bank.money_deposited", {"amount": "10"}),
        (3, "bank.money_withdrawn", {"amount": "4"}),
    ]
    newest = json_of(["read", "acc-1", "--url", url, "--backwards", "--limit", "1"])
    assert isinstance(newest, list)
    assert [e["version"] for e in newest] == [3]
    assert (
        "bank.money_withdrawn" in runner.invoke(store.app, ["read", "acc-1", "--url", url]).stdout
    )


def test_reading_an_unknown_stream_fails_with_a_message(url: str) -> None:
    result = runner.invoke(store.app, ["read", "nobody", "--url", url])
    assert result.exit_code == 1
    assert "stream 'nobody' does not exist" in result.stderr


def test_a_store_that_cannot_be_opened_fails_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "events.db").write_text("not a database, but a note to self\n" * 100)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    result = runner.invoke(store.app, ["streams", "--url", url])
    assert result.exit_code == 1
    assert "error: cannot open SQLite event store" in result.stderr


def test_projection_status_and_rebuild(url: str) -> None:
    status = json_of(["status", *APP, "--url", url], projections.app)
    assert status == [{"name": "bank.balances", "position": 0, "head": 5, "lag": 5}]
    rebuilt = json_of(["rebuild", "bank.balances", *APP, "--url", url], projections.app)
    assert rebuilt == {"name": "bank.balances", "position": 5}
    status = json_of(["status", "bank.balances", *APP, "--url", url], projections.app)
    assert status == [{"name": "bank.balances", "position": 5, "head": 5, "lag": 0}]
    human = runner.invoke(projections.app, ["rebuild", "bank.balances", *APP, "--url", url])
    assert "rebuilt bank.balances up to position 5" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--app", "tidings.examples.bank.projections"], "expected module:attribute"),
        (["status", "--app", "tidings.examples.bank.projections:nope"], "cannot load"),
        (["status", "--app", "tidings.examples.bank.account:Account"], "is not a Projection"),
        (["rebuild", "other", *APP], "no projection 'other' (known: bank.balances)"),
    ],
)
def test_bad_projection_arguments_are_usage_errors(url: str, args: list[str], message: str) -> None:
    result = runner.invoke(projections.app, [*args, "--url", url])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.replace("│", " ").split())


def test_the_demo_rebuilds_the_account_in_another_process(tmp_path: Path) -> None:
    out = io.StringIO()
    run_bank_demo(Console(file=out, width=200), f"sqlite:///{tmp_path / 'demo.db'}")
    text = out.getvalue()
    assert "refused: cannot withdraw 500.00 from a balance of 70.00" in text
    assert "rebuilt from its events" in text
    assert "Ada's balance: 82.50 after 4 events, in process" in text
