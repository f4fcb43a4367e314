"""``tickd demo`` as a user runs it: the installed console script, in a real subprocess, with the
fake exchange and the daemon talking over loopback."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tickd.codecs.tape import TapeReader


def _tickd() -> str:
    script = Path(sys.executable).with_name("tickd")
    return str(script) if script.exists() else shutil.which("tickd") or "tickd"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}


def test_the_console_script_runs_the_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [_tickd(), "demo", "--duration", "10", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "demo: ok"
    assert "books agree with the exchange" in result.stdout
    assert re.search(
        r"\d+ events/s \| \d+ decisions \| \d+ orders \| \d+ fills \| PnL", result.stderr
    )
    tapes = [Path(line.removeprefix("tape: ")) for line in lines if line.startswith("tape: ")]
    assert tapes and all(t.is_relative_to(out) for t in tapes)
    sources = {record.source for tape in tapes for record in TapeReader(tape)}
    assert {"alpaca.stocks", "alpaca.trade_updates", "alpaca.history.stocks"} <= sources
    report = next(line for line in lines if line.startswith("report: "))
    html = Path(report.split()[1])
    assert html.exists() and "<svg" in html.read_text()
    assert (out / "tickd.log").exists()
    digest = next(line for line in lines if line.startswith("digest: "))
    assert re.fullmatch(r"digest: [0-9a-f]{64}", digest)
    # The tape replays to the decisions the demo printed for it.
    replay = subprocess.run(
        [_tickd(), "replay", *map(str, tapes), "--config", str(out / "replay.toml"), "--no-report"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.splitlines()[-1] == digest
    # One order's causal chain, from the trace file the daemon wrote, as the demo says to ask.
    command = next(line for line in lines if line.startswith("trace an order: "))
    args = command.removeprefix("trace an order: tickd ").split()
    traced = subprocess.run(
        [_tickd(), *args, "--json"], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert traced.returncode == 0, traced.stderr
    chain = json.loads(traced.stdout)
    stages = [span["name"] for span in chain]
    assert stages[:5] == ["event", "decode", "bank", "strategy", "risk"]
    assert {"submit", "ack", "fill"} <= set(stages)
    starts = [span["start_ns"] for span in chain]
    assert starts == sorted(starts)
    assert chain[0]["attributes"]["tickd.source"] == "alpaca.stocks"
    assert chain[0]["attributes"]["tickd.event_id"].startswith(("Bar:", "Trade:"))
    printed = subprocess.run(
        [_tickd(), *args], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert "caused by " in printed.stdout and "\nfill " in printed.stdout


def test_ctrl_c_stops_the_demo_and_still_reports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    process = subprocess.Popen(
        [_tickd(), "demo", "--duration", "600", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("tapes/*.tape")):
        time.sleep(0.2)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert "report: " in stdout, stdout + stderr
    assert "digest: " in stdout
