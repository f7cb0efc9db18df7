"""``bus.subscribe(Event)`` accepts only handlers of ``Event``, its ``Message`` or
``list[Event]``: mypy reports a handler of another event type (data/typed_handlers.py)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

HERE = Path(__file__).parent


def test_mypy_reports_exactly_the_mismatched_handlers() -> None:
    source = HERE / "data" / "typed_handlers.py"
    report, errors, status = api.run(["--strict", "--no-error-summary", str(source)])
    assert errors == ""
    lines = source.read_text().splitlines()
    wrong = {n for n, line in enumerate(lines, start=1) if line.endswith("# wrong")}
    reported = {int(line.split(":")[1]) for line in report.splitlines() if ": error:" in line}
    assert reported == wrong, report
    assert status == 1
