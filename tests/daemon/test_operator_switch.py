"""``tickd run`` trading (strategy, risk, simulated broker) as a real subprocess: the operator
halts and resumes it with ``tickd halt``/``resume`` and with SIGUSR1/SIGUSR2, and the state it is
in shows in ``risk.json``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from .alpaca_server import MiniAlpaca
from .test_app import config_file, run_tickd


async def state_becomes(report: Path, state: str, source: str) -> None:
    with anyio.fail_after(30):
        while True:
            if report.exists():
                body = json.loads(report.read_text())
                if (body["state"], body["source"]) == (state, source):
                    return
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_the_operator_halts_and_resumes_a_running_daemon(
    tmp_path: Path, compiled_banks: None
) -> None:
    server = MiniAlpaca()
    async with server.running():
        path = config_file(tmp_path, server.url.rsplit("/v2", 1)[0])
        # A top-level key goes before the tables.
        text = f'state_dir = "{tmp_path / "state"}"\n' + path.read_text()
        text += '[[strategies]]\nkind = "ema_cross"\n[risk]\ntrading_hours = "always"\n'
        path.write_text(text)
        process = run_tickd(
            "run", "--config", str(path), APCA_API_KEY_ID="key", APCA_API_SECRET_KEY="secret"
        )
        report = tmp_path / "state" / "risk.json"
        try:
            await state_becomes(report, "active", "config")
            with anyio.fail_after(60):
                while server.connections == 0 or len(server.received) < 2:  # ready: subscribed
                    await anyio.sleep(0.05)
            halt = [sys.executable, "-m", "tickd.daemon.cli", "halt", "--config", str(path)]
            halted = subprocess.run(
                [*halt, "--reason", "lunch"], capture_output=True, text=True, timeout=60
            )
            assert halted.returncode == 0, halted.stderr
            await state_becomes(report, "halted", "operator")
            assert json.loads(report.read_text())["reason"] == "lunch"
            process.send_signal(signal.SIGUSR2)
            await state_becomes(report, "active", "signal")
            process.send_signal(signal.SIGUSR1)
            await state_becomes(report, "halted", "signal")
            process.send_signal(signal.SIGTERM)
            out, err = await anyio.to_thread.run_sync(process.communicate, 30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, err
    assert "risk_state_changed" in out and "reconciled" in out
    assert (tmp_path / "state" / "order-salt").exists()
