"""docs/observability.md: the code of its "Traces" and "Logs" sections runs and prints the
lines they show.

Only those: the page's other sections export to services a test run does not have.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec

PAGE = Path(__file__).parents[2] / "docs" / "observability.md"
PYTHON = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
JSON = re.compile(r"^```json\n(.*?)^```$", re.DOTALL | re.MULTILINE)
TEXT = re.compile(r"^```text\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_logs_example_prints_json_lines_naming_the_message(tmp_path: Path) -> None:
    logs = section(PAGE.read_text(), "Logs")
    script = "\n\n".join(PYTHON.findall(logs))

    done = subprocess.run(
        [sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    printed = [msgspec.json.decode(line) for line in done.stdout.splitlines()]
    (shown,) = JSON.findall(logs)
    promised = [msgspec.json.decode(line) for line in shown.splitlines()]
    assert [line.keys() for line in printed] == [line.keys() for line in promised]
    for got, said in zip(printed, promised, strict=True):
        ids = ("time", "message_id", "correlation_id")
        assert {k: v for k, v in got.items() if k not in ids} == {
            k: v for k, v in said.items() if k not in ids
        }
    assert printed[1]["message_id"] == printed[1]["correlation_id"]


def test_the_traces_example_prints_the_spans_it_shows(tmp_path: Path) -> None:
    traces = section(PAGE.read_text(), "Traces")
    (script,) = PYTHON.findall(traces)
    (shown,) = TEXT.findall(traces)

    done = subprocess.run(
        [sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == shown
