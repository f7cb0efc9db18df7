"""Commands that only read (``dlq``, ``store``, ``projections status``) never create a database,
and what they cannot read becomes one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from tidings.eventsourcing.store import EventStore, NewEvent

Invoke = Callable[..., Result]

READERS = [
    ["dlq", "list"],
    ["dlq", "show", "0190"],
    ["dlq", "replay"],
    ["dlq", "purge", "--yes"],
    ["store", "streams"],
    ["store", "read", "account-1"],
]


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_missing_sqlite_file_is_reported_not_created(
    cli: Invoke, tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    result = cli(*command, "--url", f"sqlite:///{missing}")
    message = one_line_error(result)
    assert "does not exist" in message
    assert str(missing) in message
    assert not (tmp_path / "no").exists()


def test_a_missing_file_in_an_existing_directory_is_not_created(
    cli: Invoke, tmp_path: Path
) -> None:
    result = cli("dlq", "list", "--url", f"sqlite:///{tmp_path / 'x.db'}")
    one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_corrupt_commit_is_one_line_naming_the_stream(
    cli: Invoke, tmp_path: Path
) -> None:
    path = tmp_path / "events.db"

    async def seed() -> None:
        async with EventStore(f"sqlite:///{path}") as store:
            await store.append("account-1", [NewEvent("deposited", b"{}")])

    asyncio.run(seed())
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE tidings_commits SET events = x'c1'")

    message = one_line_error(cli("store", "read", "account-1", "--url", f"sqlite:///{path}"))
    assert "corrupt record" in message
    assert "stream 'account-1' version 1, position 1" in message


@pytest.mark.parametrize("group", ["store", "dlq"])
def test_an_unknown_scheme_names_the_scheme_and_not_the_password(cli: Invoke, group: str) -> None:
    result = cli(group, "list" if group == "dlq" else "streams", "--url", "mongo://u:s3cret@h/db")
    message = one_line_error(result)
    assert "'mongo'" in message
    assert "s3cret" not in result.output
