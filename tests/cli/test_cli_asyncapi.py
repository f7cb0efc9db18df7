"""``tidings asyncapi APP``: the bus's AsyncAPI document as JSON or YAML, on stdout or in a file."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import Result

Invoke = Callable[..., Result]

APP = """
from dataclasses import dataclass

import tidings

names = tidings.Registry()


@dataclass(frozen=True)
class Paid:
    invoice: int


names.register(Paid, "billing.paid")
bus = tidings.Bus("redis://:pw@127.0.0.1:6379/0", registry=names)
bus.subscribe(Paid, print, group="ledger")
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``module:bus`` of an application in the current directory (a module name of its own)."""
    module = f"billing_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command puts the directory first
    return f"{module}:bus"


def test_the_document_goes_to_stdout_or_to_a_file(cli: Invoke, app: str, tmp_path: Path) -> None:
    printed = cli("asyncapi", app)
    written = cli("asyncapi", app, "--output", str(tmp_path / "asyncapi.json"))

    assert printed.exit_code == 0, printed.stderr
    assert written.exit_code == 0, written.stderr
    assert written.stdout == ""
    doc = json.loads(printed.stdout)
    assert json.loads((tmp_path / "asyncapi.json").read_text()) == doc
    assert doc["info"] == {"title": app.partition(":")[0], "version": "1.0.0"}
    assert doc["servers"]["redis"]["host"] == "127.0.0.1:6379"
    assert list(doc["operations"]) == ["send.billing.paid", "receive.builtins.print"]


def test_yaml_says_the_same_as_json(cli: Invoke, app: str) -> None:
    as_json = cli("asyncapi", app, "--title", "Billing", "--api-version", "2.0.0")
    as_yaml = cli(
        "asyncapi", app, "--format", "yaml", "--title", "Billing", "--api-version", "2.0.0"
    )

    assert as_yaml.exit_code == 0, as_yaml.stderr
    assert as_yaml.stdout.startswith("asyncapi: 3.0.0\n")
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    assert json.loads(as_json.stdout)["info"] == {"title": "Billing", "version": "2.0.0"}


def test_an_app_that_is_not_there_is_a_usage_error(cli: Invoke, app: str) -> None:
    result = cli("asyncapi", app.replace(":bus", ":nothing"))

    assert result.exit_code == 2
    assert "has no" in result.output
    assert "'nothing'" in result.output


def test_yaml_without_pyyaml_says_what_to_install(
    cli: Invoke, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed

    result = cli("asyncapi", app, "--format", "yaml")

    assert result.exit_code == 2
    assert "tidings[yaml]" in result.output
