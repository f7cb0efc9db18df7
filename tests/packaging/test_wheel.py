"""The wheel works on its own: built from this checkout, installed into a new virtual environment
and run from an empty directory, ``tidings demo`` completes without the source checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("tidings-*.whl")
    return built


def test_the_wheel_carries_the_license_the_types_and_the_demo(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "tidings/py.typed" in names
    assert "tidings/examples/signup/app.py" in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


@pytest.mark.timeout(600)
def test_the_demo_runs_from_an_installed_wheel_in_an_empty_directory(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True
    )
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    demo = subprocess.run(
        [env_dir / "bin" / "tidings", "demo", "--json", "--count", "200"],
        cwd=empty,
        capture_output=True,
        text=True,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout)
    assert summary["complete"] is True
    assert summary["count"] == 200
    assert summary["handled"]["audit"] == 200
