"""The replay benchmark's peer: NautilusTrader's ``BacktestEngine`` with its bundled ``EMACross``.

Runs in its own venv (``.venv-nautilus``, installed from ``bench/nautilus.lock``), never in
tickd's: ``python bench/_nautilus_peer.py TRADES.npz [--logging]``. The ``.npz`` holds the very
trades of the replay tape (``ts``, ``symbol`` (index into ``symbols``), ``price``, ``size``,
``trade_id``), written by ``bench/replay.py``. One engine, one simulated venue (XNAS, netting,
margin account), one ``TestInstrumentProvider.equity`` per symbol and one ``EMACross`` per symbol
(fast 10, slow 20, 10 shares) on 1-minute bars that the engine aggregates from the trade ticks.

Only ``engine.run()`` is timed, as NautilusTrader's own benchmarks do: building the ``TradeTick``
objects and ``add_data`` (which sorts them) are left out. Prints one JSON object:
``{trades, seconds, trades_per_second, orders, fills, bars, iterations, version}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from typing import Any

import numpy as np
from nautilus_trader import __version__
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.examples.strategies.ema_cross import EMACross, EMACrossConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import BarType, TradeTick
from nautilus_trader.model.enums import AccountType, AggressorSide, OmsType
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.objects import Money
from nautilus_trader.test_kit.providers import TestInstrumentProvider

VENUE = "XNAS"
FAST, SLOW, TRADE_SIZE = 10, 20, Decimal(10)


def _engine(logging: bool) -> BacktestEngine:
    config = BacktestEngineConfig(
        logging=LoggingConfig(log_level="INFO" if logging else "ERROR"),
        run_analysis=False,
    )
    engine = BacktestEngine(config=config)
    engine.add_venue(
        venue=Venue(VENUE),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        starting_balances=[Money(10_000_000, USD)],
        base_currency=USD,
        default_leverage=Decimal(1),
        trade_execution=True,  # the trades are the only market data: they set the prices
    )
    return engine


def _ticks(trades: Any, symbol: int, instrument: Any) -> list[Any]:
    """The symbol's trades as ``TradeTick`` objects (NautilusTrader's own bulk constructor)."""
    mine = trades["symbol"] == symbol
    ts = trades["ts"][mine].astype(np.uint64)
    return TradeTick.from_raw_arrays_to_list(
        instrument.id,
        instrument.price_precision,
        instrument.size_precision,
        trades["price"][mine].astype(np.float64),
        trades["size"][mine].astype(np.float64),
        np.full(len(ts), AggressorSide.NO_AGGRESSOR, dtype=np.uint8),
        [str(i) for i in trades["trade_id"][mine]],
        ts,
        ts,
    )


def run(path: str, logging: bool) -> dict[str, Any]:
    with np.load(path) as data:
        trades = {key: data[key] for key in data.files}
    engine = _engine(logging)
    bar_types = []
    total = 0
    for index, symbol in enumerate(str(s) for s in trades["symbols"]):
        instrument = TestInstrumentProvider.equity(symbol, VENUE)
        engine.add_instrument(instrument)
        ticks = _ticks(trades, index, instrument)
        total += len(ticks)
        engine.add_data(ticks)
        bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-LAST-INTERNAL")
        bar_types.append(bar_type)
        config = EMACrossConfig(
            instrument_id=instrument.id,
            bar_type=bar_type,
            trade_size=TRADE_SIZE,
            fast_ema_period=FAST,
            slow_ema_period=SLOW,
            subscribe_trade_ticks=False,  # its on_trade_tick only logs each tick (debugging)
            request_bars=False,  # no history to ask for: the engine holds only these trades
            order_id_tag=f"{index:03d}",
        )
        engine.add_strategy(EMACross(config=config))
    started = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - started
    orders = engine.cache.orders()
    fills = sum(1 for o in orders for e in o.events if type(e).__name__ == "OrderFilled")
    bars = sum(engine.cache.bar_count(b) for b in bar_types)
    result = {
        "trades": total,
        "seconds": seconds,
        "trades_per_second": total / seconds,
        "orders": len(orders),
        "fills": fills,
        "bars": bars,
        "iterations": engine.iteration,
        "version": __version__,
    }
    engine.dispose()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trades", help=".npz of ts, symbol, price, size, trade_id, symbols")
    parser.add_argument("--logging", action="store_true", help="NautilusTrader's INFO logging")
    args = parser.parse_args()
    print(json.dumps(run(args.trades, args.logging)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
