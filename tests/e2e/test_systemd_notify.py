"""``tickd run`` as systemd runs it: a real subprocess with the unit's environment (a notify
socket the test owns, a watchdog, keys in a credentials directory, numba's cache in a writable
directory of its own) trading against the fake exchange; then SIGTERM."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tickd.strategies
from tickd.codecs.tape import TapeReader

from .fake_exchange import fake_exchange

KEY_ID, SECRET = "PKNOTIFYKEY3a1b", "SKNOTIFYSECRET8c2d"
STOP_TIMEOUT = 45.0  # the unit's TimeoutStopSec


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(name, None)
    return env


def _tickd() -> str:
    return str(Path(sys.executable).with_name("tickd"))


@pytest.fixture
def exchange() -> Iterator[dict[str, str]]:
    with fake_exchange(_tickd(), _env(), "AAPL,MSFT", KEY_ID, SECRET) as urls:
        yield urls


def _config(urls: dict[str, str], tmp: Path) -> Path:
    path = tmp / "tickd.toml"
    path.write_text(
        f"""
[alpaca]
stream_url = "{urls["market_data_url"]}"
data_url = "{urls["data_url"]}"
trading_stream_url = "{urls["trading_stream_url"]}"
stock_channels = ["trades", "bars"]
silence_limit = 0
warmup_bars = 30

[symbols]
stocks = ["AAPL", "MSFT"]

[broker]
kind = "alpaca"
trading_url = "{urls["trading_url"]}"
on_stop = "cancel"

[record]
enabled = true

[risk]
trading_hours = "always"
max_orders_per_minute = 600

[log]
format = "json"

[[strategies]]
kind = "ema_cross"
params = {{ fast = 3, slow = 8, qty = 1, allow_short = true }}
""",
        encoding="utf-8",
    )
    return path


class Manager:
    """The service manager's end of ``$NOTIFY_SOCKET``: every datagram, with when it came, read
    by a thread all along (as PID 1 reads them)."""

    def __init__(self, path: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.05)
        self.received: list[tuple[float, list[str]]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode().split("\n")))

    def wait_for(self, field: str, timeout: float) -> float:
        """When ``field`` (e.g. ``READY=1``) first came, waiting up to ``timeout`` s for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, fields in list(self.received):
                if field in fields:
                    return at
            time.sleep(0.02)
        raise AssertionError(f"no {field} within {timeout} s: {self.received}")

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.socket.close()


def _run(urls: dict[str, str], tmp: Path, cache: Path) -> dict[str, Any]:
    """One service run: start, READY, watch the pings, SIGTERM, exit. Its figures and output."""
    state, credentials = tmp / "state", tmp / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "alpaca.key_id").write_text(KEY_ID)
    (credentials / "alpaca.secret_key").write_text(SECRET)
    notify = tmp / "notify"
    notify.unlink(missing_ok=True)
    manager = Manager(notify)
    env = {
        **_env(),
        "NOTIFY_SOCKET": str(notify),
        "WATCHDOG_USEC": "1000000",  # WatchdogSec=1s: a ping every 0.5 s
        "CREDENTIALS_DIRECTORY": str(credentials),
        "STATE_DIRECTORY": str(state),
        "NUMBA_CACHE_DIR": str(cache),
        "PYTHONFAULTHANDLER": "1",
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [_tickd(), "run", "--config", str(_config(urls, tmp))],
        env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        ready = manager.wait_for("READY=1", 240) - started
        time.sleep(3.0)
        stop = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=STOP_TIMEOUT)
        stopped = time.monotonic() - stop
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every stack to stderr
            _, stderr = process.communicate(timeout=10)
            print(stderr.decode()[-6000:], file=sys.stderr)
        manager.close()
    return {
        "ready_s": ready,
        "stop_s": stopped,
        "status": process.returncode,
        "messages": manager.received,
        "log": [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")],
        "stderr": stderr.decode(),
        "state": state,
    }


def _code_files() -> set[Path]:
    """Numba cache files beside the code (what a read-only code directory would refuse)."""
    root = Path(tickd.strategies.__file__).parent
    return {p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")}


def test_tickd_run_under_a_service_manager(
    exchange: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    before = _code_files()
    runs = []
    written: dict[Path, int] = {}
    for n in (1, 2):  # cold, then with the cache the first run wrote
        tmp = tmp_path / f"run{n}"
        tmp.mkdir()
        runs.append(_run(exchange, tmp, cache))
        if n == 1:
            written = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    for run in runs:
        assert run["status"] == 0, run["stderr"][-3000:]
        log, messages = run["log"], run["messages"]
        events = [line["event"] for line in log]
        # READY only after every feed has subscribed.
        ready_at = next(i for i, (_, fields) in enumerate(messages) if "READY=1" in fields)
        assert events.count("feed_ready") >= 2 and "daemon_ready" in events
        [(_, ready)] = [m for m in messages if "READY=1" in m[1]]
        assert any(f.startswith("STATUS=ready") for f in ready)
        # Pings at the rate asked, from then on until the stop (whose bound is TimeoutStopSec).
        stopping = next(i for i, (_, fields) in enumerate(messages) if "STOPPING=1" in fields)
        pings = [at for at, fields in messages[ready_at:stopping] if "WATCHDOG=1" in fields]
        assert len(pings) >= 4
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 1.0  # within WatchdogSec
        assert any(f.startswith("STATUS=") and "msg/s" in f for _, m in messages for f in m)
        # SIGTERM: STOPPING, the ordered stop, exit 0 within the stop timeout.
        assert any("STOPPING=1" in fields for _, fields in messages)
        assert run["stop_s"] < STOP_TIMEOUT
        assert "daemon_stopped" in events and "stop_orders_cancelled" in events
        # The tape is whole: every record readable, nothing torn at the end.
        [tape] = list((run["state"] / "tapes").glob("*.tape"))
        reader = TapeReader(tape)
        assert sum(1 for _ in reader) > 10
        assert reader.ignored_bytes == 0 and reader.tail_error is None
        assert (run["state"] / "traces.jsonl").exists()
    # numba's cache went to its own directory, none beside the code; the second run loaded
    # it: it compiled nothing, so it wrote nothing there.
    assert list(cache.rglob("*.nbi")) and _code_files() == before
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == written
    with capsys.disabled():
        print(
            f"\n[systemd] READY cold {runs[0]['ready_s']:.1f} s, cached {runs[1]['ready_s']:.1f} s;"
            f" SIGTERM to exit {runs[0]['stop_s']:.2f} s, {runs[1]['stop_s']:.2f} s"
        )
