"""Warm-up from history: the real alpaca-py data clients against a scripted REST server on
loopback, then the whole trading graph starting warmed without trading on the history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tickd.codecs.alpaca_rest import encode_bars_page
from tickd.codecs.schema import Bar, CryptoBar
from tickd.daemon.app import App
from tickd.daemon.clock import ManualClock
from tickd.daemon.config import load
from tickd.daemon.warmup import WarmUp, WarmUpSettings

from .http_server import HttpServer, Received, Reply

MINUTE = 60 * 10**9
NOW = 1_709_650_800 * 10**9  # 2024-03-05 15:00 UTC


def history(symbol: str, closes: list[float], kind: type = Bar) -> list[Any]:
    """Bars ending the minute before NOW, newest first (the order ``sort=desc`` asks for)."""
    n = len(closes)
    return [
        kind(
            symbol=symbol,
            ts_event=NOW - (n - i) * MINUTE,
            open=c,
            high=c + 1,
            low=c - 1,
            close=c,
            volume=100,
        )
        for i, c in enumerate(closes)
    ][::-1]


class HistoryServer(HttpServer):
    def __init__(self, bars: dict[str, list[Any]], broken: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.bars = bars
        self.broken = broken
        self.respond = self._bars

    def _bars(self, request: Received) -> Reply:
        symbol = request.query["symbols"]
        if symbol in self.broken:
            return Reply(500, b'{"message": "internal server error"}')
        limit = int(request.query["limit"])
        return Reply(200, encode_bars_page(self.bars.get(symbol, [])[:limit]))


@pytest.mark.anyio
async def test_the_last_n_bars_of_each_symbol_oldest_first() -> None:
    stored = {
        "AAPL": history("AAPL", [float(100 + i) for i in range(30)]),
        "MSFT": history("MSFT", [float(400 + i) for i in range(5)]),  # fewer than asked
        "BTC/USD": history("BTC/USD", [60_000.0 + i for i in range(30)], CryptoBar),
    }
    server = HistoryServer(stored)
    with server.running():
        settings = WarmUpSettings(
            bars=20, stocks=("AAPL", "MSFT"), crypto=("BTC/USD",), data_url=server.url
        )
        warmup = WarmUp(settings, "key", "secret", ManualClock(NOW))
        bars = await warmup.fetch()
    assert [b.close for b in bars if b.symbol == "AAPL"] == [float(110 + i) for i in range(20)]
    assert [b.close for b in bars if b.symbol == "MSFT"] == [float(400 + i) for i in range(5)]
    assert sum(type(b) is CryptoBar for b in bars) == 20
    assert [b.ts_event for b in bars] == sorted(b.ts_event for b in bars)  # oldest first
    assert all(b.ts_recv == NOW for b in bars)
    assert (warmup.stats.requests, warmup.stats.bars, warmup.stats.failures) == (3, 45, 0)
    paths = sorted(r.path for r in server.received)
    assert paths == ["/v1beta3/crypto/us/bars", "/v2/stocks/bars", "/v2/stocks/bars"]
    aapl = next(r for r in server.received if r.query["symbols"] == "AAPL")
    assert aapl.query["sort"] == "desc" and aapl.query["limit"] == "20"
    assert aapl.query["feed"] == "iex" and aapl.query["timeframe"] == "1Min"
    assert aapl.query["end"].startswith("2024-03-05T15:00:00")
    assert aapl.headers["apca-api-key-id"] == "key"


@pytest.mark.anyio
async def test_a_symbol_without_history_is_counted_and_the_rest_still_warm() -> None:
    stored = {"AAPL": history("AAPL", [100.0] * 5), "MSFT": history("MSFT", [400.0] * 5)}
    server = HistoryServer(stored, broken=frozenset({"MSFT"}))
    with server.running():
        settings = WarmUpSettings(bars=5, stocks=("AAPL", "MSFT"), data_url=server.url)
        warmup = WarmUp(settings, "key", "secret", ManualClock(NOW))
        bars = await warmup.fetch()
    assert {b.symbol for b in bars} == {"AAPL"} and len(bars) == 5
    assert warmup.stats.failures == 1
    assert len([r for r in server.received if r.query["symbols"] == "MSFT"]) == 1  # no retry


@pytest.mark.anyio
async def test_the_daemon_starts_warmed_and_never_trades_on_history(
    tmp_path: Path, compiled_bank: None
) -> None:
    # A zig-zag: the fast EMA crosses the slow one several times within the history.
    closes = [100.0 + (5 if (i // 4) % 2 else -5) + i * 0.01 for i in range(40)]
    server = HistoryServer({"AAPL": history("AAPL", closes)})
    with server.running():
        path = tmp_path / "tickd.toml"
        path.write_text(
            f"""
state_dir = "{tmp_path}"
[alpaca]
data_url = "{server.url}"
warmup_bars = 40
[symbols]
stocks = ["AAPL"]
[risk]
trading_hours = "always"
[[strategies]]
kind = "ema_cross"
params = {{fast = 3, slow = 6, qty = 1}}
""",
            encoding="utf-8",
        )
        environ = {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret"}
        clock = ManualClock(NOW)
        app = App(load(path, environ=environ), clock=clock, feeds=False)
        async with anyio.create_task_group() as tg:
            await tg.start(app.run)
            await app.drained()
            app.stop()
    assert app.warmup is not None and app.warmup.stats.bars == 40
    assert app.bank.ready(0).all()  # warmed before any live bar
    assert app.host.warmup_intents > 0  # it decided on the history...
    assert app.broker_actor.sent == 0 and app.portfolio.orders == {}  # ...and traded nothing
    assert str(app.portfolio.marks["AAPL"]) == repr(closes[-1])  # risk has a price already
