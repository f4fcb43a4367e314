"""Tapes for the replay tests, made from the synthetic market with the real encoders: Alpaca's
stock stream frames (the handshake first, then data in frames of up to 100 messages, a new frame
each market second), stamped with the time the last message of each became available."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from tickd.codecs.alpaca import AlpacaEncoder
from tickd.codecs.schema import Bar, News, Trade
from tickd.codecs.synthetic import MarketConfig, SyntheticMarket, alpaca_handshake, available_at
from tickd.codecs.tape import TapeWriter

EQUITIES = (("AAPL", 190.0), ("MSFT", 410.0))

CONFIG = """
[symbols]
stocks = ["AAPL", "MSFT"]
[risk]
trading_hours = "always"
max_orders_per_minute = 1000
[broker]
kind = "sim"
slippage_bps = 2.0
fee_per_share = 0.005
[[strategies]]
kind = "ema_cross"
params = {fast = 5, slow = 20, qty = 10, allow_short = true}
"""


def market_events(minutes: int, seed: int = 7, news: bool = False) -> list[Any]:
    config = MarketConfig(
        equities=EQUITIES,
        crypto=(),
        seed=seed,
        volatility=0.6,
        trade_rate=0.3,
        quote_rate=0.0,
        halt_probability=0.0,
        news_rate=30.0 if news else 0.0,
    )
    end = config.start_ns + minutes * 60 * 10**9
    kinds = (Bar, Trade, News) if news else (Bar, Trade)
    return [e for e in SyntheticMarket(config).events_until(end) if type(e) in kinds]


def frames_by_second(events: list[Any], batch: int = 100) -> list[tuple[int, list[Any]]]:
    """(receive time, events) per frame: a new frame each second or each ``batch`` events."""
    frames: list[tuple[int, list[Any]]] = []
    for event in sorted(events, key=available_at):
        at = available_at(event)
        if frames and at // 10**9 == frames[-1][0] // 10**9 and len(frames[-1][1]) < batch:
            frames[-1] = (at, [*frames[-1][1], event])
        else:
            frames.append((at, [event]))
    return frames


def write_market_tape(
    path: Path,
    events: list[Any],
    *,
    encoding: Literal["json", "msgpack"] = "json",
    compression: Literal["none", "zstd"] = "none",
) -> list[tuple[int, list[Any]]]:
    """A tape of ``events`` as the stock stream sends them; the frames written (time, events)."""
    encoder = AlpacaEncoder("stocks", encoding)
    news = AlpacaEncoder("news", encoding)
    frames = frames_by_second(events)
    first = frames[0][0] if frames else 0
    with TapeWriter(path, created_ns=first, compression=compression) as tape:
        for i, frame in enumerate(alpaca_handshake("stocks", encoding)):
            tape.write(first - 1000 + i, "alpaca.stocks", frame)
        for at, chunk in frames:
            stock = [e for e in chunk if type(e) is not News]
            if stock:
                tape.write(at, "alpaca.stocks", encoder.encode(stock))
            stories = [e for e in chunk if type(e) is News]
            if stories:
                tape.write(at, "alpaca.news", news.encode(stories))
    return frames


def strip_recv(event: Any) -> Any:
    """An event without its receive stamp (live and replay stamp the same message differently)."""
    return msgspec.structs.replace(event, ts_recv=0)
