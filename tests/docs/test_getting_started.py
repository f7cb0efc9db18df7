"""Every ``python`` block of docs/getting-started.md runs, in order, as one script would.

The blocks run in a fresh interpreter (so the guide's event names stay out of this process's
registry), in one ``__main__`` namespace, in a temporary directory (so its SQLite file goes away).
Each ``text`` block is output the guide promises: it must appear in what the blocks print.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "getting-started.md"
PYTHON = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
TEXT = re.compile(r"^```text\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_the_code_in_the_getting_started_guide_runs_and_prints_what_it_says(
    tmp_path: Path,
) -> None:
    page = DOC.read_text()
    script = "\n\n".join(PYTHON.findall(page))
    assert script.count("asyncio.run(") >= 5

    done = subprocess.run(
        [sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    promised = [
        "welcome mail to ada@example.com\n",
        "['__main__.send_welcome', 'audit']\n",
        *TEXT.findall(page),
        "mail to linus@example.com sent on attempt 3\n",
        "welcome mail to frances@example.com, from the log\n",
    ]
    for text in promised:
        assert text in out, f"{text!r} is not in the output:\n{out}"
    assert "dead-lettered" in done.stderr  # the warning the guide mentions
