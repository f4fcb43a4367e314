"""The API keys in the configuration appear nowhere the daemon writes: ``tickd run`` in a real
subprocess trades against the fake exchange (a subprocess too) with recognisable keys, records its
feeds, and is stopped with SIGTERM; then its stdout, stderr, state directory and tapes (raw bytes
and decoded records) are searched for them, as is the error message of a run whose keys are
refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tickd.codecs.tape import TapeReader

from .fake_exchange import fake_exchange

pytestmark = pytest.mark.usefixtures("compiled_banks")

KEY_ID = "PKTESTKEY7f3a9c1e2b"
SECRET = "SKTESTSECRET4d8b0f6a2c9e"
WRONG_KEY_ID = "PKWRONGKEY5e1c7a3f08"
WRONG_SECRET = "SKWRONGSECRET9b2d4f6a71"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "CREDENTIALS_DIRECTORY"):
        env.pop(name, None)  # the keys come from the config file only
    return env


def _script() -> str:
    return str(Path(sys.executable).with_name("tickd"))


def _tickd(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([_script(), *args], env=_env(), **kwargs)


@pytest.fixture
def exchange() -> Iterator[dict[str, str]]:
    """The fake exchange, accepting KEY_ID and SECRET only; its URLs."""
    with fake_exchange(_script(), _env(), "AAPL,MSFT,NVDA", KEY_ID, SECRET) as urls:
        yield urls


def _config(urls: dict[str, str], tmp: Path, key_id: str, secret: str, trading: bool) -> Path:
    text = f"""
state_dir = "{tmp / "state"}"

[alpaca]
key_id = "{key_id}"
secret_key = "{secret}"
stream_url = "{urls["market_data_url"]}"
data_url = "{urls["data_url"]}"
trading_stream_url = "{urls["trading_stream_url"]}"
stock_channels = ["trades", "bars"]
silence_limit = 0
warmup_bars = {60 if trading else 0}

[symbols]
stocks = ["AAPL", "MSFT", "NVDA"]

[log]  # the libraries' debug lines carry the auth frame and the request headers
level = "debug"
libraries = "debug"
"""
    if trading:
        text += f"""
[broker]
kind = "alpaca"
trading_url = "{urls["trading_url"]}"
timeout = 5.0

[record]
enabled = true
directory = "{tmp / "tapes"}"
compression = "zstd"

[risk]
trading_hours = "always"
max_position = 50
max_orders_per_minute = 600

[[strategies]]
kind = "ema_cross"
params = {{ fast = 3, slow = 8, qty = 10, allow_short = true }}
"""
    path = tmp / ("run.toml" if trading else "refused.toml")
    path.write_text(text, encoding="utf-8")
    return path


def _leaks(data: bytes, *secrets: str) -> list[str]:
    """The secrets found in ``data``, whole or as a run of 12 characters (a library's debug
    dump of the auth frame cuts it mid-secret) or of 8 bytes in hex (a binary frame's dump)."""

    def pieces(secret: str) -> list[bytes]:
        text = secret.encode()
        runs = [text[i : i + 12] for i in range(len(text) - 11)]
        hexed = [
            " ".join(f"{b:02x}" for b in text[i : i + 8]).encode() for i in range(len(text) - 7)
        ]
        return [text, *runs, *hexed]

    return [s for s in secrets if any(piece in data for piece in pieces(s))]


def test_the_keys_appear_in_no_log_line_state_file_tape_or_error(
    exchange: dict[str, str], tmp_path: Path
) -> None:
    config = _config(exchange, tmp_path, KEY_ID, SECRET, trading=True)
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        daemon = _tickd("run", "--config", str(config), stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and daemon.poll() is None:
                if b'"order_sent"' in out_path.read_bytes():
                    break
                time.sleep(0.2)
            time.sleep(2.0)  # fills come back on trade_updates, the recorder flushes
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
    stdout, stderr = out_path.read_bytes(), err_path.read_bytes()
    assert daemon.returncode == 0, stderr.decode(errors="replace")

    # Something was produced: JSON log lines, an order, recorded frames.
    events = [json.loads(line)["event"] for line in stdout.splitlines()]
    assert "daemon_ready" in events and "daemon_stopped" in events
    assert "order_sent" in events, "the strategy sent no order: the test would show little"
    assert not _leaks(stdout, KEY_ID, SECRET)
    assert not _leaks(stderr, KEY_ID, SECRET)

    files = [p for d in ("state", "tapes") for p in (tmp_path / d).rglob("*") if p.is_file()]
    tapes = [p for p in files if p.suffix == ".tape" or ".tape" in p.name]
    assert tapes, f"no tape among {files}"
    for path in files:
        assert not _leaks(path.read_bytes(), KEY_ID, SECRET), path
    records = 0
    for path in tapes:
        reader = TapeReader(path)
        assert not _leaks(json.dumps(reader.header.meta).encode(), KEY_ID, SECRET), path
        for record in reader:  # decompressed: what a zstd block hides from the raw search
            records += 1
            assert not _leaks(record.data, KEY_ID, SECRET), (path, record.source)
    assert records > 10


def test_refused_keys_exit_69_and_the_message_does_not_show_them(
    exchange: dict[str, str], tmp_path: Path
) -> None:
    config = _config(exchange, tmp_path, WRONG_KEY_ID, WRONG_SECRET, trading=False)
    daemon = _tickd("run", "--config", str(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = daemon.communicate(timeout=120)
    assert daemon.returncode == 69, err
    assert b"402" in err or b"auth failed" in err
    assert not _leaks(out + err, WRONG_KEY_ID, WRONG_SECRET, KEY_ID, SECRET)
