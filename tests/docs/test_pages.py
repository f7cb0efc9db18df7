"""The README and the concept pages run as written and print what they say.

Each page's ``python`` blocks run in order, as one script, in a fresh interpreter in a temporary
directory; each ``text`` block is output the page promises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PYTHON = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
TEXT = re.compile(r"^```text\n(.*?)^```$", re.DOTALL | re.MULTILINE)
PAGES = [
    "README.md",
    "docs/bus.md",
    "docs/processors.md",
    "docs/errors.md",
    "docs/testing.md",
    "docs/from-go.md",
    "docs/asyncapi.md",
    "docs/fastapi.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_and_prints_what_it_says(page: str, tmp_path: Path) -> None:
    text = (ROOT / page).read_text()
    script = "\n\n".join(PYTHON.findall(text))
    assert script, f"{page} has no python block"
    done = subprocess.run(
        [sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for promised in TEXT.findall(text):
        assert promised in done.stdout, f"{promised!r} is not in the output:\n{done.stdout}"
