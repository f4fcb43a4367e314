"""Record -> replay round trips through real parts: the fake exchange on loopback, the daemon's
real feeds, alpaca-py for orders, the recorder, the tape file, and the replayer; and the ``tickd
record`` process killed with SIGKILL in the middle of a recording."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from tickd.codecs.schema import Bar, Trade
from tickd.codecs.tape import TapeReader
from tickd.daemon.actors import Mailbox
from tickd.daemon.app import App
from tickd.daemon.demo import demo_config
from tickd.daemon.fake_exchange.server import FakeExchange, FakeExchangeSettings
from tickd.daemon.replay import Replayer, TapeDecoders
from tickd.strategies.base import OrderIntent

pytestmark = pytest.mark.usefixtures("compiled_banks")

SYMBOLS = ("AAPL", "MSFT", "NVDA")


async def _record_live(out: Path, bars_wanted: int) -> tuple[App, list[Any], list[OrderIntent]]:
    """The demo's daemon against the fake exchange until ``bars_wanted`` live bars arrived;
    the app, the data messages its feeds published and its intents."""
    exchange = FakeExchange(FakeExchangeSettings(symbols=SYMBOLS, seed=7, speed=60.0))
    published: Mailbox[Any] = Mailbox("published", 1_000_000)
    bars: Mailbox[Any] = Mailbox("bars", 1_000_000)
    intents: Mailbox[Any] = Mailbox("intents", 1_000_000)
    async with anyio.create_task_group() as tasks:
        urls = await tasks.start(exchange.run)
        app = App(demo_config(urls, out))
        for kind in (Bar, Trade):
            app.bus.subscribe(published, kind)
        app.bus.subscribe(bars, Bar)
        app.bus.subscribe(intents, OrderIntent)
        async with anyio.create_task_group() as daemon:
            await daemon.start(app.run)
            with anyio.fail_after(120):
                while len(bars) < bars_wanted:
                    await anyio.sleep(0.1)
            app.stop()
        exchange.stop()
    data = await published.receive_batch(1_000_000)
    decided = await intents.receive_batch(1_000_000) if len(intents) else []
    return app, data, decided


def test_a_live_recording_replays_to_the_same_events_and_decisions(tmp_path: Path) -> None:
    app, live, live_intents = anyio.run(_record_live, tmp_path, 36)
    assert app.recorder is not None
    tapes = app.recorder.paths()
    sources = {r.source for path in tapes for r in TapeReader(path)}
    assert {"alpaca.stocks", "alpaca.history.stocks", "alpaca.trade_updates"} <= sources

    # The tape holds what the feeds received: decoded again, the same messages, stamps included.
    decoders = TapeDecoders()
    replayed: list[Any] = []
    for path in tapes:
        for record in TapeReader(path):
            if record.source == "alpaca.stocks":
                decoded = decoders.decode(record)
                assert decoded is not None and not decoded.errors
                replayed += [m for m in decoded.messages if type(m) in (Bar, Trade)]
    assert replayed == live

    # Replayed with the simulated broker: the same decisions as live, and the same every time.
    config = app.config
    config = msgspec.structs.replace(
        config, record=msgspec.structs.replace(config.record, enabled=False)
    )
    first, second = Replayer(tapes, config), Replayer(tapes, config)
    summary = anyio.run(first.run)
    assert anyio.run(second.run).digest == summary.digest
    assert summary.events == len(live)
    assert app.warmup is not None and summary.history == app.warmup.stats.bars > 0
    assert live_intents, "the strategy decided nothing live: the test would show nothing"
    decided = [(i.symbol, i.side, i.event_id) for i in live_intents]
    assert [(i.symbol, i.side, i.event_id) for i in first.intents] == decided


def _tickd(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("tickd")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    return subprocess.Popen([str(script), *args], env=env, **kwargs)


def test_tickd_record_killed_with_sigkill_leaves_a_readable_tape(tmp_path: Path) -> None:
    exchange = _tickd(
        "fake-exchange",
        "--port",
        "0",
        "--speed",
        "600",
        "--symbols",
        "AAPL,MSFT",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert exchange.stdout is not None
        ready, _, _ = select.select([exchange.stdout], [], [], 60)
        assert ready, "the fake exchange printed no JSON line"
        urls = json.loads(exchange.stdout.readline())
        config = tmp_path / "record.toml"
        config.write_text(
            f"""
[alpaca]
key_id = "{urls["key"]}"
secret_key = "{urls["secret"]}"
stream_url = "{urls["market_data_url"]}"
stock_channels = ["trades", "quotes", "bars"]
[symbols]
stocks = ["AAPL", "MSFT"]
[record]
flush_interval = 0.05
"""
        )
        tape = tmp_path / "killed.tape"
        recorder = _tickd(
            "record",
            "--config",
            str(config),
            "--out",
            str(tape),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                not tape.exists() or tape.stat().st_size < 20_000
            ):
                time.sleep(0.05)
            assert tape.exists() and tape.stat().st_size >= 20_000, "nothing was recorded"
            os.kill(recorder.pid, signal.SIGKILL)
        finally:
            recorder.wait(10)
        assert recorder.returncode == -signal.SIGKILL
    finally:
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(20)
    reader = TapeReader(tape)
    records = list(reader)
    assert len(records) > 10
    assert [r.ts_ns for r in records] == sorted(r.ts_ns for r in records)
    decoders = TapeDecoders()
    for record in records:  # every record read is whole: each decodes cleanly
        decoded = decoders.decode(record)
        assert decoded is not None and not decoded.errors, record
    assert reader.ignored_bytes >= 0  # a torn tail, if the kill fell mid-write, is reported
    info = _tickd("tape", "info", str(tape), stdout=subprocess.PIPE)
    out, _ = info.communicate(timeout=60)
    assert info.returncode == 0
    assert f"{len(records)} records" in out.decode()


def test_tickd_record_stops_on_time_even_while_a_feed_cannot_connect(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "nowhere.toml"
    config.write_text(
        f'[alpaca]\nkey_id = "k"\nsecret_key = "s"\nstream_url = "ws://127.0.0.1:{port}"\n'
        '[symbols]\nstocks = ["AAPL"]\n'
    )
    recorder = _tickd(
        "record",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "none.tape"),
        "--duration",
        "2",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = recorder.communicate(timeout=120)  # it used to wait for a handshake forever
    assert recorder.returncode == 0, err
    assert b"recorded: no frames" in out


def test_tickd_record_refused_keys_exit_69_with_the_reason(tmp_path: Path) -> None:
    exchange = _tickd(
        "fake-exchange", "--port", "0", "--symbols", "AAPL",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert exchange.stdout is not None
        ready, _, _ = select.select([exchange.stdout], [], [], 60)
        assert ready, "the fake exchange printed no JSON line"
        urls = json.loads(exchange.stdout.readline())
        config = tmp_path / "wrong-keys.toml"
        config.write_text(
            f'[alpaca]\nkey_id = "wrong"\nsecret_key = "wrong"\n'
            f'stream_url = "{urls["market_data_url"]}"\n[symbols]\nstocks = ["AAPL"]\n'
        )
        recorder = _tickd(
            "record", "--config", str(config), "--out", str(tmp_path / "refused.tape"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, err = recorder.communicate(timeout=120)
    finally:
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(20)
    assert recorder.returncode == 69, err
    assert b"402" in err or b"auth failed" in err
    assert b"Traceback" not in err
