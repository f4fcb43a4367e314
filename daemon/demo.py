"""``tickd demo``: the daemon trading against the fake exchange, in one process, no account.

The fake exchange (:mod:`.fake_exchange`) serves Alpaca's market data streams, bar history,
trading API and ``trade_updates`` on loopback, driven by the synthetic market at ``speed`` market
seconds per wall second. The daemon is built from an ordinary configuration pointed at those
URLs: it warms its indicators up from the bar history, streams minute bars, runs the EMA-cross
strategy, checks risk, and sends orders through the real alpaca-py ``TradingClient``; fills come
back on ``trade_updates``. Every frame is recorded to a tape. A status line shows events/s,
decisions, orders, fills and PnL until ``duration`` passes or Ctrl-C; then the tape is replayed
with the simulated broker (the digest line names its decisions) and a report is written.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import msgspec

from . import eventloop, logs
from .app import App
from .broker.actor import TRADE_UPDATES
from .config import Config, LogConfig, load
from .fake_exchange.server import FakeExchange, FakeExchangeSettings
from .feeds.websocket import WebsocketFeed
from .replay import Replayer
from .report import write_report
from .tape_commands import summary_lines
from .trace_export import read_spans, trace_file

__all__ = ["DEMO_SYMBOLS", "TRADING_TOML", "demo_config", "run_demo"]

DEMO_SYMBOLS = ("AAPL", "MSFT", "NVDA")


#: What the demo trades, and how: also written next to the tape, for ``tickd replay``.
TRADING_TOML = """\
[symbols]
stocks = ["AAPL", "MSFT", "NVDA"]

[risk]
trading_hours = "always"
max_position = 50
max_orders_per_minute = 120

[[strategies]]
kind = "ema_cross"
params = { fast = 5, slow = 20, qty = 10, allow_short = true }
"""


def demo_config(urls: dict[str, str], out: Path) -> Config:
    """The daemon's configuration for the fake exchange at ``urls``, state and tapes in ``out``."""
    market = urls["market_data_url"]
    trading = tomllib.loads(TRADING_TOML)
    return msgspec.convert(
        {
            **trading,
            "state_dir": str(out / "state"),
            "alpaca": {
                "key_id": urls["key"],
                "secret_key": urls["secret"],
                "stream_url": market,
                "data_url": urls.get("data_url") or market.replace("ws://", "http://", 1),
                "trading_stream_url": urls.get("trading_stream_url")
                or urls["trading_url"].replace("http://", "ws://", 1) + "/stream",
                "encoding": "msgpack",
                "stock_channels": ["trades", "bars"],
                "warmup_bars": 60,
                "silence_limit": 0,
            },
            "broker": {"kind": "alpaca", "trading_url": urls["trading_url"], "timeout": 5.0},
            "record": {"enabled": True, "directory": str(out / "tapes"), "compression": "zstd"},
        },
        Config,
    )


def run_demo(
    duration: float,
    seed: int,
    speed: float,
    out_dir: str,
    out: Callable[[str], None] = print,
) -> int:
    """Run the demo; the process exit status (0 when the daemon traded and the books agree)."""
    out_path = Path(out_dir).resolve()
    out_path.mkdir(parents=True, exist_ok=True)
    log_path = out_path / "tickd.log"
    status: int = eventloop.run(_demo, duration, seed, speed, out_path, log_path, out)
    return status


async def _demo(
    duration: float,
    seed: int,
    speed: float,
    out_path: Path,
    log_path: Path,
    out: Callable[[str], None],
) -> int:
    shutil.rmtree(out_path / "state", ignore_errors=True)  # each run starts flat and active
    settings = FakeExchangeSettings(symbols=DEMO_SYMBOLS, seed=seed, speed=speed)
    exchange = FakeExchange(settings)
    stop = anyio.Event()
    finished = False
    with _logs_to(log_path), anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tasks:

            async def on_signals() -> None:
                async for _ in signals:  # the first asks for the end; a second one insists
                    if stop.is_set():
                        tasks.cancel_scope.cancel()
                    stop.set()

            tasks.start_soon(on_signals)
            urls: dict[str, str] = await tasks.start(exchange.run)
            market, trading = urls["market_data_url"], urls["trading_url"]
            out(f"fake exchange: market data {market}, trading {trading}")
            config = demo_config(urls, out_path)
            app = App(config)
            async with anyio.create_task_group() as daemon:
                await daemon.start(app.run)
                out(
                    f"daemon: ema_cross(5, 20) on {', '.join(DEMO_SYMBOLS)}, orders through "
                    f"alpaca-py; {duration:g} s at {speed:g}x market time (Ctrl-C stops)"
                )
                with anyio.move_on_after(duration):
                    async with anyio.create_task_group() as watching:
                        watching.start_soon(_watch, app)
                        await stop.wait()
                        watching.cancel_scope.cancel()
                await _settle(app)
                app.stop()  # the ordered shutdown: feeds, then each actor drains; tape closed
            venue = await anyio.to_thread.run_sync(_venue_positions, urls)
            exchange.stop()
            finished = True
            tasks.cancel_scope.cancel()
        if not finished:  # a second Ctrl-C: stop now, say nothing more
            return 130
        return await _finish(app, venue, config, out_path, log_path, out)


async def _settle(app: App, patience: float = 5.0) -> None:
    """Give orders already sent a moment to be answered (their fills on ``trade_updates``), so
    the books compare what both sides know."""
    with anyio.move_on_after(patience):
        while app.portfolio.orders or app.portfolio.pending:
            await anyio.sleep(0.05)


def _venue_positions(urls: dict[str, str]) -> dict[str, Decimal]:
    """The exchange's positions, asked through the official client as a user would."""
    from alpaca.trading.client import TradingClient

    client = TradingClient(
        urls["key"], urls["secret"], paper=True, raw_data=True, url_override=urls["trading_url"]
    )
    positions: Any = client.get_all_positions()
    return {p["symbol"]: Decimal(p["qty"]) for p in positions if Decimal(p["qty"])}


async def _watch(app: App) -> None:
    """The status line, once a second, until cancelled."""
    interactive = sys.stderr.isatty()
    started = last_time = time.monotonic()
    last_events = 0
    try:
        while True:
            await anyio.sleep(1.0)
            now, events = time.monotonic(), _events(app)
            rate = (events - last_events) / (now - last_time)
            last_events, last_time = events, now
            line = _status(app, rate, now - started)
            print(
                f"\r{line}" if interactive else line,
                end="" if interactive else "\n",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if interactive:
            print(file=sys.stderr)


def _events(app: App) -> int:
    """Market data messages the feeds have published so far (not the order updates)."""
    return sum(
        f.stats.messages
        for f in app.feeds
        if isinstance(f, WebsocketFeed) and f.source != TRADE_UPDATES
    )


def _status(app: App, rate: float, elapsed: float) -> str:
    portfolio = app.portfolio
    return (
        f"[{elapsed:5.0f} s] {rate:8,.0f} events/s | {app.host.intents} decisions | "
        f"{app.broker_actor.sent} orders | {portfolio.fills} fills | "
        f"PnL {float(portfolio.pnl()):+.2f}"
    )


async def _finish(
    app: App,
    venue: dict[str, Decimal],
    config: Config,
    out_path: Path,
    log_path: Path,
    out: Callable[[str], None],
) -> int:
    portfolio = app.portfolio
    local = {s: p.qty for s, p in portfolio.positions.items() if p.qty}
    agree = venue == local
    held = dict(sorted((s, str(q)) for s, q in local.items()))
    out(
        f"daemon: {_events(app)} events, {app.host.intents} decisions, "
        f"{app.broker_actor.sent} orders, {portfolio.fills} fills, "
        f"PnL {float(portfolio.pnl()):+.2f}; positions {held}; "
        f"books {'agree' if agree else 'DISAGREE'} with the exchange"
    )
    assert app.recorder is not None
    tapes = app.recorder.paths()
    replay_toml = out_path / "replay.toml"
    replay_toml.write_text(TRADING_TOML, encoding="utf-8")
    replayer = Replayer(tapes, load(replay_toml), report=True)
    summary = await replayer.run()
    out("replay of the tape with the simulated broker:")
    for line in summary_lines(summary):
        out(f"    {line}")
    json_path, html_path = write_report(replayer.report_data("tickd demo"), out_path / "report")
    for tape in tapes:
        out(f"tape: {tape}")
    out(f"report: {html_path} (summary {json_path})")
    out(f"replay it: tickd replay {' '.join(map(str, tapes))} --config {replay_toml}")
    out(f"logs: {log_path}")
    traces = trace_file(config)
    spans, _ = read_spans(traces)
    filled = next((s for s in spans if s.name == "fill"), None)
    out(f"traces: {traces}")
    if filled is not None:  # one order's chain, wire frame to fill
        coid = filled.attributes["tickd.client_order_id"]
        out(f"trace an order: tickd trace {coid} --file {traces}")
    out(f"digest: {summary.digest}")
    traded = portfolio.fills > 0 and summary.intents > 0
    out("demo: ok" if agree and traded else "demo: FAILED (see the lines above)")
    return 0 if agree and traded else 1


@contextlib.contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """Structured logs to a file while the demo runs (the terminal shows the status line); then
    only warnings, on stderr."""
    with path.open("a", encoding="utf-8") as file:
        logs.configure(LogConfig(format="json"), stream=file)
        try:
            yield
        finally:
            logs.configure(LogConfig(level="warning"), stream=sys.stderr)
