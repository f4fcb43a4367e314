"""The reliability tests' figures: each test hands its rows to ``figures``, which asserts the
targets they carry and prints them all in one table at the end of the run."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from bench.harness import Row

_ROWS: list[tuple[str, Row]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[Iterable[Row]], None]:
    """``figures(rows)``: keep the rows for the summary, and fail on any target not met."""

    def report(rows: Iterable[Row]) -> None:
        rows = list(rows)
        assert rows, "a reliability test must report at least one figure"
        _ROWS.extend((request.node.name, row) for row in rows)
        missed = [f"{r.metric}: {r.value} {r.unit} (target {r.target})" for r in rows
                  if r.meets_target is False]  # fmt: skip
        assert not missed, "targets missed: " + "; ".join(missed)

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    terminalreporter.section("reliability figures (quick sizes; full: python -m bench reliability)")
    for test, row in _ROWS:
        verdict = "met" if row.meets_target else "MISSED"
        target = f"  [{row.target}: {verdict}]" if row.target else ""
        terminalreporter.write_line(f"{test}: {row.metric} = {row.value:g} {row.unit}{target}")
