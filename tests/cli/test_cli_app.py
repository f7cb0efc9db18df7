"""The ``tidings`` command as a whole: its commands, version and options."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version

from typer.testing import Result

from tidings.cli.connect import scrub

Invoke = Callable[..., Result]


def test_help_lists_every_command(cli: Invoke) -> None:
    result = cli("--help")

    assert result.exit_code == 0
    for command in ("demo", "run", "publish", "tail", "dlq", "groups", "store", "projections"):
        assert f" {command} " in result.stdout


def test_version(cli: Invoke) -> None:
    result = cli("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"tidings {version('tidings')}"


def test_unknown_log_level_is_refused(cli: Invoke) -> None:
    assert cli("--log-level", "loud", "dlq", "--help").exit_code == 2


def test_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "dlq", "--help"], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    assert "replay" in result.stdout


def test_scrub_hides_the_password_wherever_it_appears() -> None:
    url = "amqp://guest:pa55@127.0.0.1:5672/"
    text = f"cannot reach {url}: login pa55 refused"

    assert scrub(text, url) == "cannot reach amqp://guest:***@127.0.0.1:5672/: login *** refused"
    assert scrub(text, None) == text
    assert scrub("no secret here", "redis://127.0.0.1:6379") == "no secret here"
