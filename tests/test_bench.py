"""The benchmark entry points run as real subprocesses and write the agreed JSON shape.

Speed is not asserted here (CI machines are noisy); only that the runs work and the output
has every key the convention (DESIGN.md, "Benchmarks") promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW_KEYS = {
    "metric",
    "value",
    "unit",
    "peer",
    "peer_value",
    "ratio_vs_peer",
    "target",
    "meets_target",
}


def _bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_lists_benchmarks() -> None:
    result = _bench()
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert "decode" in names
    assert "cannot import" not in result.stderr


def test_unknown_benchmark_fails() -> None:
    result = _bench("no-such-benchmark")
    assert result.returncode != 0
    assert "unknown benchmark" in result.stderr


def test_decode_quick_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "decode.json"
    result = _bench("decode", "--quick", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "msgspec lossy" in result.stdout  # the table was printed

    document = json.loads(out.read_text())
    assert document["benchmark"] == "decode"
    machine = document["machine"]
    for key in ("cpu", "cores", "python", "platform", "packages"):
        assert machine.get(key), key
    assert machine["packages"].get("msgspec")

    rows = document["rows"]
    assert rows
    for row in rows:
        assert row.keys() >= ROW_KEYS, row
        assert isinstance(row["metric"], str) and row["metric"]
        assert isinstance(row["value"], int | float) and row["value"] > 0
        assert isinstance(row["unit"], str) and row["unit"]
        if row["peer"] is None:
            assert row["peer_value"] is None and row["ratio_vs_peer"] is None
        else:
            assert isinstance(row["peer_value"], int | float) and row["peer_value"] > 0
            assert isinstance(row["ratio_vs_peer"], int | float) and row["ratio_vs_peer"] > 0
        if row["target"] is None:
            assert row["meets_target"] is None
        else:
            assert isinstance(row["target"], str)
            assert isinstance(row["meets_target"], bool)
    peers = {row["peer"] for row in rows}
    assert {"alpaca-py", "msgspec lossy"} <= peers


def test_replay_quick_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "replay.json"
    env = {**os.environ, "TICKD_BENCH_CACHE": str(tmp_path / "cache")}  # a tape of its own
    result = subprocess.run(
        [sys.executable, "-m", "bench", "replay", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "events/s" in result.stdout  # the table was printed
    assert list((tmp_path / "cache").glob("replay-50000-*.frames.npz"))  # the cached tape

    document = json.loads(out.read_text())
    assert document["benchmark"] == "replay"
    rows = document["rows"]
    for row in rows:
        assert row.keys() >= ROW_KEYS, row
    goal = [row for row in rows if row["target"] == ">= 1,000,000 events/s"]
    assert len(goal) == 1 and goal[0]["unit"] == "events/s"
    assert goal[0]["value"] > 0 and isinstance(goal[0]["meets_target"], bool)
    assert "50,000 trades" in goal[0]["metric"]
    notes = "\n".join(document["notes"])
    assert "where the time goes" in notes
    peer = [row for row in rows if row["peer"] == "NautilusTrader"]
    if peer:  # its venv is there: the ratio was measured in the same run
        assert peer[0]["peer_value"] > 0 and peer[0]["ratio_vs_peer"] > 0
        assert peer[0]["target"] == ">= 5x faster than NautilusTrader"
    else:
        assert "NautilusTrader skipped" in notes
