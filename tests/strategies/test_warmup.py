"""The cold warm-up shares the compiling between processes and leaves one cache that loads
everything without a compile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tickd.strategies.indicators import CATALOG, warmup
from tickd.strategies.indicators.warmup import merge_cache

_COUNT_COMPILES = """
import sys
from numba.core import event
compiles = []
class Count(event.Listener):
    def on_start(self, e): compiles.append(e.data["dispatcher"].py_func.__qualname__)
    def on_end(self, e): pass
from tickd.strategies.indicators import warmup
from tickd.strategies.indicators.bank import CATALOG, Spec
if sys.argv[1] == "cold":
    print("merged", warmup.compile_shared(list(CATALOG), [Spec(n) for n in CATALOG], 2))
event.register("numba:compile", Count())
warmup.compile_all(jobs=1)
print("compiled", len(compiles), ",".join(compiles))
"""


def _run(cache: Path, phase: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    env["NUMBA_CACHE_DIR"] = str(cache)
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_COMPILES, phase],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Warning" not in done.stderr, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_a_cold_cache_filled_by_two_processes_then_loads_without_compiling(tmp_path: Path) -> None:
    cold = _run(tmp_path, "cold")
    assert int(cold["merged"]) > 0  # the worker compiled a share, and it was merged
    assert cold["compiled"].startswith("0 "), cold["compiled"]  # the merged share loads
    assert _run(tmp_path, "warm")["compiled"].startswith("0 ")  # so does this process's share
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.iterdir()).name]  # no leftovers


def _entry(folder: Path, stem: str, data: int, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, data + 1):
        (folder / f"{stem}.py311.{i}.nbc").write_text(f"{text} {i}")
    (folder / f"{stem}.py311.nbi").write_text(text)


def test_merge_moves_only_functions_the_target_lacks(tmp_path: Path) -> None:
    source, target = tmp_path / "worker", tmp_path / "main"
    _entry(source / "indicators_x", "averages._sma-10", 2, "worker")
    _entry(source / "indicators_x", "primitives.sma_next-5", 1, "worker")
    _entry(target / "indicators_x", "primitives.sma_next-5", 2, "main")

    assert merge_cache(source, target) == 1

    moved = target / "indicators_x"
    assert (moved / "averages._sma-10.py311.nbi").read_text() == "worker"
    assert (moved / "averages._sma-10.py311.2.nbc").read_text() == "worker 2"
    # a function both compiled keeps the target's index and data, never a mix of the two
    assert (moved / "primitives.sma_next-5.py311.nbi").read_text() == "main"
    assert (moved / "primitives.sma_next-5.py311.1.nbc").read_text() == "main 1"
    assert (source / "indicators_x" / "primitives.sma_next-5.py311.nbi").exists()
    assert not list(source.rglob("averages.*"))


def test_a_worker_that_cannot_start_leaves_the_compiling_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.warns(UserWarning, match="kernel warm-up in one process: .*nonexistent"):
        warmup.compile_all(jobs=2)
    assert CATALOG["sma"].batch(np.arange(5.0), timeperiod=2)[-1] == 3.5


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_that_dies_leaves_its_share_to_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # exits 1 before reading a name
    with pytest.warns(UserWarning, match="kernel warm-up worker exited with 1"):
        warmup.compile_all(jobs=2)
    assert CATALOG["sma"].batch(np.arange(5.0), timeperiod=2)[-1] == 3.5
