"""Every ``python`` block of docs/event-sourcing.md runs, in order, in a fresh interpreter.

The blocks share one module namespace and one event loop, as in the asyncio REPL the page names:
a block may ``await`` at top level (and then says so in its first line), and a block meant to
run as a script calls ``asyncio.run`` itself. They run in a temporary directory so the SQLite
files they create go away. A fresh interpreter keeps the event names the page registers out of
this process's registry. The last ``text`` block is output the page promises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec

DOC = Path(__file__).parents[2] / "docs" / "event-sourcing.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)

RUNNER = """
import ast, asyncio, sys, types
import msgspec

blocks = msgspec.json.decode(sys.stdin.buffer.read())
module = sys.modules["event_sourcing_doc"] = types.ModuleType("event_sourcing_doc")

loop = asyncio.new_event_loop()
for number, block in enumerate(blocks, 1):
    code = compile(
        block, f"event-sourcing.md block {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    result = eval(code, module.__dict__)
    if asyncio.iscoroutine(result):
        loop.run_until_complete(result)
loop.close()
"""
MARK = "# top-level await: python -m asyncio"
TEXT = re.compile(r"^```text\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_blocks_with_top_level_await_say_so() -> None:
    for block in BLOCK.findall(DOC.read_text()):
        try:
            compile(block, "block", "exec")
        except SyntaxError:
            assert block.startswith(MARK), f"a block awaits at top level unmarked:\n{block}"


def test_the_code_in_the_event_sourcing_guide_runs(tmp_path: Path) -> None:
    page = DOC.read_text()
    blocks = BLOCK.findall(page)
    assert len(blocks) >= 8
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=msgspec.json.encode(blocks),
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "Cart 'cart-404' does not exist" in out
    assert "stream 'cart-1': expected version 1, but the stream is at 2" in out
    assert 'cart.item_added cart-3 b\'{"sku":"apple","quantity":2}\'' in out
    printed = TEXT.findall(page)[-1]  # the others show commands, not output
    assert printed in out, f"{printed!r} is not in the output:\n{out}"
