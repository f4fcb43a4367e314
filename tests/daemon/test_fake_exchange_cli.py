"""``tickd fake-exchange`` as a real process: the JSON line, its URLs working for the official
alpaca-py clients, chaos switched at run time, and a clean exit on SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from alpaca.trading.stream import TradingStream
from websockets.sync.client import connect

from tickd.daemon.fake_exchange.server import _settings, configure_parser

LAUNCH = (
    "import sys, argparse\n"
    "from tickd.daemon.fake_exchange.server import configure_parser, run_cli\n"
    "p = argparse.ArgumentParser(); configure_parser(p)\n"
    "sys.exit(run_cli(p.parse_args(sys.argv[1:])))\n"
)


@contextmanager
def fake_exchange(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no JSON line within a minute"
        yield process, json.loads(process.stdout.readline())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def stream_login(url: str, key: str, secret: str) -> Any:
    """Connect to the stocks stream, authenticate; the answer to the auth."""
    with connect(url + "/v2/iex", additional_headers={"Content-Type": "application/json"}) as ws:
        assert json.loads(ws.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
        ws.send(json.dumps({"action": "auth", "key": key, "secret": secret}))
        return json.loads(ws.recv(timeout=5))[0]


def test_the_process_prints_its_urls_serves_them_and_stops_on_sigterm() -> None:
    with fake_exchange("--key", "k1", "--secret", "s1", "--symbols", "AAPL") as (process, urls):
        assert urls["key"] == "k1" and urls["secret"] == "s1"
        assert urls["market_data_url"].startswith("ws://127.0.0.1:")
        assert urls["trading_url"].startswith("http://127.0.0.1:")
        assert stream_login(urls["market_data_url"], "k1", "s1")["msg"] == "authenticated"
        account = TradingClient("k1", "s1", url_override=urls["trading_url"]).get_account()
        assert float(account.cash) > 0  # type: ignore[union-attr]
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_random_keys_chaos_at_start_and_switched_through_the_trading_port() -> None:
    with fake_exchange("--connect-error", "500") as (process, urls):
        key, secret = urls["key"], urls["secret"]
        assert key != "fake-key" and len(secret) > 16  # fresh for each start
        url = urls["market_data_url"]
        assert stream_login(url, key, secret) == {
            "T": "error",
            "code": 500,
            "msg": "internal error",
        }
        request = urllib.request.Request(
            urls["trading_url"] + "/_chaos",
            data=msgspec.json.encode({"connect_error": 0}),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
        assert stream_login(url, key, secret)["msg"] == "authenticated"
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0


def test_alpaca_py_trading_client_and_stream_see_an_order_filled() -> None:
    with fake_exchange("--symbols", "AAPL") as (_, urls):
        key, secret = urls["key"], urls["secret"]
        updates: list[Any] = []
        filled = threading.Event()

        async def on_update(update: Any) -> None:
            updates.append(update)
            if update.event == "fill":
                filled.set()

        stream = TradingStream(key, secret, url_override=urls["trading_stream_url"])
        stream.subscribe_trade_updates(on_update)
        thread = threading.Thread(target=stream.run, daemon=True)
        thread.start()
        try:
            for _ in range(200):  # until it is listening (an order before that goes unseen)
                if stream._running:
                    break
                time.sleep(0.05)
            client = TradingClient(key, secret, url_override=urls["trading_url"])
            order = client.submit_order(
                MarketOrderRequest(
                    symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
                )
            )
            assert filled.wait(20), f"updates: {updates}"
        finally:
            if stream._loop is not None:  # it ran: stop its loop
                stream.stop()
            thread.join(10)
        fill = next(u for u in updates if u.event == "fill")
        assert str(fill.order.id) == str(order.id)  # type: ignore[union-attr]
        assert float(fill.order.filled_qty) == 3
        positions = client.get_all_positions()
        assert [(p.symbol, float(p.qty)) for p in positions] == [("AAPL", 3.0)]  # type: ignore[union-attr]


def test_kinds_are_comma_separated_names() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        ["--malformed-kinds", "bad_json, nan_price", "--broken-kinds", "opcode"]
    )
    chaos = _settings(args).chaos
    assert chaos.malformed_kinds == ("bad_json", "nan_price")
    assert chaos.broken_kinds == ("opcode",)


@pytest.mark.parametrize(
    "option",
    [
        ["--speed", "0"],
        ["--symbols", "not a symbol"],
        ["--broken-kinds", "flipped_bits"],
        ["--malformed-kinds", "bad_json,bad_xml"],
    ],
)
def test_bad_options_exit_2(option: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, *option], capture_output=True, env=env, timeout=60
    )
    assert done.returncode == 2
    assert b"fake-exchange" in done.stderr and done.stdout == b""
