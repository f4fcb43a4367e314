"""The project's own recordings of its fake exchange (tests/data/tapes, made by record.py there),
replayed through the real graph: the decisions must match the golden summary exactly. A change
that moves a digest changed what the daemon decides; if that was meant, re-run
``python tests/data/tapes/record.py --golden-only`` and commit the new golden.json with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tickd.daemon.config import load
from tickd.daemon.replay import Replayer

pytestmark = pytest.mark.usefixtures("compiled_banks")

TAPES = Path(__file__).resolve().parents[1] / "data" / "tapes"
GOLDEN: dict[str, dict[str, Any]] = json.loads((TAPES / "golden.json").read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_recorded_tape_replays_to_its_golden_decisions(name: str) -> None:
    summary = anyio.run(Replayer([TAPES / f"{name}.tape"], load(TAPES / f"{name}.toml")).run)
    golden = GOLDEN[name]
    assert (
        golden["intents"] > 0 and golden["fills"] > 0
    )  # a golden that decides nothing guards nothing
    got = {key: getattr(summary, key) for key in golden}
    assert got == golden
    assert summary.decode_errors == 0 and summary.ignored_bytes == 0


def _tickd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    return subprocess.run(
        [str(Path(sys.executable).with_name("tickd")), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_tickd_replay_prints_the_golden_digest_and_writes_the_report(tmp_path: Path) -> None:
    tape, config = TAPES / "mixed.tape", TAPES / "mixed.toml"
    result = _tickd("replay", str(tape), "--config", str(config), "--report", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"digest: {GOLDEN['mixed']['digest']}"
    assert any(line.startswith("decisions: 24 intents") for line in lines)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["digest"] == GOLDEN["mixed"]["digest"]
    html = (tmp_path / "report.html").read_text()
    for symbol in ("BTC/USD", "ETH/USD", "AAPL", "MSFT"):
        assert symbol in html


def test_tickd_tape_info_and_cat_look_inside(tmp_path: Path) -> None:
    tape = TAPES / "mixed.tape"
    info = _tickd("tape", "info", str(tape))
    assert info.returncode == 0, info.stderr
    assert "tape v1, zstd" in info.stdout
    assert "alpaca.news:" in info.stdout and "alpaca.history.crypto:" in info.stdout
    cat = _tickd("tape", "cat", str(tape), "--source", "alpaca.news")
    assert cat.returncode == 0, cat.stderr
    lines = [json.loads(line) for line in cat.stdout.splitlines()]
    assert {line["source"] for line in lines} == {"alpaca.news"}
    news = [line for line in lines if line["type"] == "News"]
    assert news and all(line["value"]["headline"] for line in news)
    raw = _tickd("tape", "cat", str(tape), "--raw", "--limit", "3")
    assert len(raw.stdout.splitlines()) == 3
    missing = _tickd("tape", "info", str(tmp_path / "nope.tape"))
    assert missing.returncode == 66 and "nope.tape" in missing.stderr
    assert "Traceback" not in missing.stderr
    not_a_tape = tmp_path / "text.tape"
    not_a_tape.write_text("hello")
    bad = _tickd("tape", "info", str(not_a_tape))
    assert bad.returncode == 65 and "text.tape" in bad.stderr


def test_tickd_replay_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    tape, config = TAPES / "ema_cross.tape", TAPES / "ema_cross.toml"
    slow = _tickd("replay", str(tape), "--config", str(config), "--speed", "0")
    assert slow.returncode == 2 and "must be > 0" in slow.stderr
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = _tickd("replay", str(tape), "--config", str(config), "--report", str(blocked))
    assert result.returncode == 0, result.stderr
    assert "the report was not written" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.splitlines()[-1] == f"digest: {GOLDEN['ema_cross']['digest']}"
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[risk]\nmax_position = -1\n")
    refused = _tickd("replay", str(tape), "--config", str(bad_config))
    assert refused.returncode == 78 and "max_position" in refused.stderr
