"""``python -m bench reliability``: the reliability suite (``tests/reliability``) at full size.

Each scenario module runs its faults against the real parts (the fake exchange over loopback, the
daemon's feeds, broker and risk, real subprocesses and signals) and returns its figures as rows
with their targets: ``figures(quick)`` at CI size with ``quick``, at the size the published table
(``docs/reliability.md``) comes from without it. The tests call the same scenario functions at
small sizes and assert the targets.
"""

from __future__ import annotations

import importlib
import sys

from bench.harness import Config, Report, benchmark
from tickd.daemon import logs
from tickd.daemon.config import LogConfig

# Imported when the benchmark runs, not when the package is: a test that needs one scenario
# module (or ``figures``) does not load them all.
_SCENARIOS = ("feeds", "orders", "fuzz", "load")


@benchmark("reliability", "chaos, fuzz, restart, overload and soak figures against their targets")
def run(config: Config) -> Report:
    report = Report(packages=("websockets", "alpaca-py", "msgspec", "anyio"))
    # The in-process daemon parts log every decision and reconnect at info: warnings and errors
    # (the faults' traces) go to stderr, the table to stdout.
    logs.configure(LogConfig(level="warning", format="console"), stream=sys.stderr)
    for name in _SCENARIOS:
        scenario = importlib.import_module(f"{__name__}.{name}")
        report.rows += scenario.figures(config.quick)
    report.notes.append("how to reproduce each figure: docs/reliability.md")
    return report
