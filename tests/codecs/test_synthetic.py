"""The synthetic data factory: a reproducible, realistic market, frames that the real codecs read
back, and Hypothesis strategies that produce what each wire can carry."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickd.codecs import alpaca_trading, finnhub, newsapi
from tickd.codecs.alpaca import AlpacaDecoder, AlpacaEncoder
from tickd.codecs.errors import Decoded
from tickd.codecs.schema import (
    Bar,
    CryptoBar,
    CryptoQuote,
    CryptoTrade,
    News,
    OrderbookUpdate,
    Ping,
    Quote,
    StreamError,
    Subscription,
    Success,
    Trade,
    TradingStatus,
)
from tickd.codecs.synthetic import (
    MarketConfig,
    SyntheticMarket,
    alpaca_frames,
    alpaca_handshake,
    alpaca_view,
    as_finnhub,
    as_newsapi,
    available_at,
    finnhub_company_news_body,
    finnhub_frames,
    finnhub_view,
    in_session,
    newsapi_body,
    price_path,
    trade_update_frames,
    trading_handshake,
)
from tickd.codecs.synthetic import strategies as s
from tickd.codecs.synthetic.market import EQUITY_EXCHANGES, NS_PER_MINUTE, NS_PER_SECOND

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FRIDAY_1955 = 1_709_927_700 * NS_PER_SECOND  # Friday 2024-03-08 19:55 UTC
SATURDAY = 1_709_942_400 * NS_PER_SECOND  # Saturday 2024-03-09 00:00 UTC
MONDAY_OPEN = 1_710_163_800 * NS_PER_SECOND  # Monday 2024-03-11 13:30 UTC (no DST shift here)


@pytest.fixture(scope="module")
def market_events() -> list[Any]:
    """Half an hour of the default market plus a few minutes: ~1e5 events."""
    config = MarketConfig(halt_probability=0.01, halt_seconds=60, news_rate=60.0)
    return SyntheticMarket(config).events(100_000)


def decode_all(decode: Any, frames: list[bytes]) -> Decoded:
    out = Decoded()
    for frame in frames:
        result = decode(frame)
        out.messages += result.messages
        out.errors += result.errors
        out.unknown += result.unknown
    return out


# --- determinism and speed ----------------------------------------------------------------------


def test_same_config_gives_identical_bytes() -> None:
    config = MarketConfig(seed=7)
    first = SyntheticMarket(config).events(20_000)
    second = SyntheticMarket(config).events(20_000)
    assert msgspec.msgpack.encode(first) == msgspec.msgpack.encode(second)
    for stream in ("stocks", "crypto", "news"):
        assert alpaca_frames(first, stream) == alpaca_frames(second, stream)


def test_iterating_again_starts_afresh() -> None:
    market = SyntheticMarket(MarketConfig(seed=3))
    assert market.events(1_000) == market.events(1_000)


def test_a_different_seed_gives_a_different_market() -> None:
    a = SyntheticMarket(MarketConfig(seed=1)).events(2_000)
    b = SyntheticMarket(MarketConfig(seed=2)).events(2_000)
    assert msgspec.msgpack.encode(a) != msgspec.msgpack.encode(b)


def test_a_hundred_thousand_events_take_seconds_not_minutes() -> None:
    started = time.perf_counter()
    events = SyntheticMarket().events(100_000)
    assert len(events) == 100_000
    assert time.perf_counter() - started < 10.0  # ~0.7 s on the dev box; generous for shared CI


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        MarketConfig(session_open_utc="20:00", session_close_utc="13:30")
    with pytest.raises(ValueError):
        MarketConfig(equities=(("AAPL", 1.0), ("AAPL", 2.0)))
    with pytest.raises(ValueError):
        MarketConfig(halt_probability=1.5)
    with pytest.raises(ValueError):
        MarketConfig(equities=(), crypto=(), news_rate=0.0)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"seeed": 1}, MarketConfig)


# --- what the market looks like -----------------------------------------------------------------


def test_events_come_in_delivery_order(market_events: list[Any]) -> None:
    delivered = [available_at(e) for e in market_events]
    assert delivered == sorted(delivered)
    ticks = [e.ts_event for e in market_events if not isinstance(e, Bar | CryptoBar)]
    assert ticks == sorted(ticks)
    assert all(e.ts_recv == 0 for e in market_events)


def test_the_market_has_every_kind_of_event(market_events: list[Any]) -> None:
    kinds = {type(e) for e in market_events}
    expected = {Trade, Quote, Bar, TradingStatus, CryptoTrade, CryptoQuote, CryptoBar}
    assert expected | {OrderbookUpdate, News} <= kinds


def test_equity_quotes_and_trades_look_like_the_sip(market_events: list[Any]) -> None:
    for e in market_events:
        if type(e) is Quote:
            assert 0 < e.bid_price < e.ask_price
            assert e.bid_size >= 1 and e.ask_size >= 1  # round lots
            assert round(e.bid_price * 100) == pytest.approx(e.bid_price * 100)
            assert e.tape in "ABC" and e.conditions == ("R",)
        elif type(e) is Trade:
            assert e.price > 0 and isinstance(e.size, int) and e.size >= 1
            assert e.exchange in EQUITY_EXCHANGES
            assert e.conditions[0] == "@"
            assert ("I" in e.conditions) == (e.size < 100)  # odd lots are flagged
            assert e.trade_id > 0


def test_trade_ids_increase_per_symbol(market_events: list[Any]) -> None:
    last: dict[str, int] = {}
    for e in market_events:
        if isinstance(e, Trade | CryptoTrade):
            assert e.trade_id > last.get(e.symbol, 0)
            last[e.symbol] = e.trade_id


def test_crypto_trades_fractions_around_the_clock(market_events: list[Any]) -> None:
    crypto = [e for e in market_events if type(e) is CryptoTrade]
    assert any(not float(e.size).is_integer() for e in crypto)
    assert all(e.size > 0 and e.taker_side in ("B", "S") for e in crypto)
    quotes = [e for e in market_events if type(e) is CryptoQuote]
    assert all(0 < q.bid_price < q.ask_price for q in quotes)


def test_equities_trade_only_in_the_session_and_crypto_never_stops() -> None:
    config = MarketConfig(
        start_ns=FRIDAY_1955,
        crypto_trade_rate=0.01,
        crypto_quote_rate=0.01,
        book_rate=0.0,
        news_rate=0.0,
    )
    events = SyntheticMarket(config).events_until(MONDAY_OPEN + 5 * NS_PER_MINUTE)
    equity = [e for e in events if type(e) in (Trade, Quote)]
    assert equity, "the Friday close and the Monday open both trade"
    assert all(in_session(e.ts_event, config) for e in equity)
    assert any(e.ts_event < SATURDAY for e in equity)
    assert any(e.ts_event >= MONDAY_OPEN for e in equity)
    weekend_crypto = [e for e in events if type(e) is CryptoTrade and e.ts_event >= SATURDAY]
    assert any(e.ts_event < MONDAY_OPEN for e in weekend_crypto)


def test_an_equities_only_market_skips_to_the_next_open() -> None:
    config = MarketConfig(start_ns=SATURDAY, crypto=(), news_rate=0.0)
    first = SyntheticMarket(config).events(1)[0]
    assert MONDAY_OPEN <= first.ts_event < MONDAY_OPEN + NS_PER_SECOND


def test_no_equity_trades_or_quotes_during_a_halt() -> None:
    config = MarketConfig(crypto=(), halt_probability=0.05, halt_seconds=30, news_rate=0.0)
    events = SyntheticMarket(config).events(50_000)
    halts: dict[str, list[tuple[int, int]]] = defaultdict(list)
    open_halt: dict[str, int] = {}
    for e in events:
        if type(e) is TradingStatus:
            if e.status_code in ("H", "2"):
                assert e.symbol not in open_halt
                open_halt[e.symbol] = e.ts_event
            else:
                assert e.status_code in ("T", "3")
                halts[e.symbol].append((open_halt.pop(e.symbol), e.ts_event))
    assert sum(map(len, halts.values())) >= 3
    for e in events:
        if type(e) in (Trade, Quote):
            assert not any(start <= e.ts_event < end for start, end in halts[e.symbol])
            assert e.symbol not in open_halt or e.ts_event < open_halt[e.symbol]


def test_bars_aggregate_exactly_the_trades_of_their_minute() -> None:
    end = MarketConfig().start_ns + 20 * NS_PER_MINUTE
    events = SyntheticMarket().events_until(end + NS_PER_MINUTE)  # bars arrive a minute late
    trades: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for e in events:
        if isinstance(e, Trade | CryptoTrade) and e.ts_event < end:
            trades[e.symbol, e.ts_event - e.ts_event % NS_PER_MINUTE].append(e)
    bars = {(b.symbol, b.ts_event): b for b in events if isinstance(b, Bar | CryptoBar)}
    bars = {key: bar for key, bar in bars.items() if key[1] < end}
    assert bars.keys() == trades.keys()  # a bar for every minute with trades, and only those
    for key, bar in bars.items():
        prices = [t.price for t in trades[key]]
        sizes = [t.size for t in trades[key]]
        assert (bar.open, bar.close) == (prices[0], prices[-1])
        assert (bar.high, bar.low) == (max(prices), min(prices))
        assert bar.volume == pytest.approx(sum(sizes), rel=1e-12)
        assert bar.trade_count == len(prices)
        vwap = sum(p * q for p, q in zip(prices, sizes, strict=True)) / sum(sizes)
        assert bar.vwap == pytest.approx(vwap, rel=1e-12)
        assert type(bar) is (Bar if type(trades[key][0]) is Trade else CryptoBar)


def test_order_book_starts_with_a_snapshot_and_stays_uncrossed(market_events: list[Any]) -> None:
    books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    for e in market_events:
        if type(e) is not OrderbookUpdate:
            continue
        assert e.reset == (e.symbol not in books)
        bids, asks = books.setdefault(e.symbol, ({}, {}))
        for side, levels in ((bids, e.bids), (asks, e.asks)):
            for level in levels:
                if level.size == 0:
                    side.pop(level.price, None)
                else:
                    side[level.price] = level.size
        assert max(bids) < min(asks)
    assert len(books) == 2


def test_news_mentions_the_market_and_has_increasing_ids(market_events: list[Any]) -> None:
    items = [e for e in market_events if type(e) is News]
    assert len(items) >= 10
    symbols = {"AAPL", "MSFT", "NVDA", "SPY", "JPM", "BTCUSD", "ETHUSD"}
    ids = [int(n.id) for n in items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for n in items:
        assert n.symbols and set(n.symbols) <= symbols
        assert n.ts_event % NS_PER_SECOND == 0 and n.ts_updated == n.ts_event
        assert n.provider == "alpaca" and n.headline and n.url.startswith("https://")


# --- OHLCV arrays -------------------------------------------------------------------------------


def test_price_path_bars_are_consistent() -> None:
    o, h, lo, c, v = price_path(50_000, seed=11)
    for column in (o, h, lo, c, v):
        assert column.dtype == np.float64 and column.shape == (50_000,)
        assert column.flags.c_contiguous and np.isfinite(column).all()
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all() and (v >= 1).all() and (v == np.rint(v)).all()


def test_price_path_is_reproducible_and_has_volatility_regimes() -> None:
    a, b = price_path(5_000, seed=1), price_path(5_000, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(price_path(5_000, seed=2).close, a.close)
    returns = np.abs(np.diff(np.log(a.close)))
    windows = returns[: len(returns) // 100 * 100].reshape(-1, 100).mean(axis=1)
    assert windows.max() > 1.5 * windows.min()  # calm and stormy stretches
    assert price_path(0).close.shape == (0,)


# --- frames: round trips through the real codecs ------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("stream", ["stocks", "crypto", "news"])
def test_alpaca_frames_decode_back_to_the_events(
    market_events: list[Any], stream: Any, encoding: Any
) -> None:
    frames = alpaca_frames(market_events, stream, encoding, batch=200)
    result = decode_all(AlpacaDecoder(stream, encoding).decode, frames)
    assert not result.errors and not result.unknown
    assert result.messages == alpaca_view(market_events, stream)
    assert result.messages


def test_alpaca_frames_batch_by_count_and_time_window(market_events: list[Any]) -> None:
    window = 50_000_000  # 50 ms
    frames = alpaca_frames(market_events[:5_000], "stocks", batch=20, window_ns=window)
    decoder = AlpacaDecoder("stocks")
    for frame in frames:
        messages = decoder.decode(frame).messages
        assert 1 <= len(messages) <= 20
        times = [available_at(m) for m in messages]
        assert times[-1] - times[0] <= window


def test_control_messages_travel_alone() -> None:
    events = [Success("connected"), Trade(symbol="A", ts_event=1, price=1.0, size=1)]
    events += [
        StreamError(406, "connection limit exceeded"),
        Quote(symbol="A", ts_event=2, bid_price=1.0, bid_size=1, ask_price=1.01, ask_size=1),
    ]
    frames = alpaca_frames(events, "stocks")
    assert [len(msgspec.json.decode(f)) for f in frames] == [1, 1, 1, 1]
    subscription = Subscription(trades=("AAPL",), quotes=(), bars=None)
    handshake = decode_all(
        AlpacaDecoder("stocks", "msgpack").decode,
        alpaca_handshake("stocks", "msgpack", subscription),
    )
    assert handshake.messages == [Success("connected"), Success("authenticated"), subscription]


def test_finnhub_frames_decode_back_to_the_finnhub_view(market_events: list[Any]) -> None:
    frames = finnhub_frames(market_events, batch=30, ping_every=5)
    result = decode_all(finnhub.FinnhubDecoder().decode, frames)
    assert not result.errors and not result.unknown
    data = [m for m in result.messages if type(m) is not Ping]
    assert data == finnhub_view(market_events)
    assert any(type(m) is Ping for m in result.messages)
    crypto = [m for m in data if type(m) is CryptoTrade]
    assert crypto and all(m.symbol.startswith("BINANCE:") for m in crypto)
    assert all(m.ts_event % 1_000_000 == 0 for m in data)


def test_news_bodies_decode_back_to_each_providers_view(market_events: list[Any]) -> None:
    items = [e for e in market_events if type(e) is News]
    company = finnhub.decode_company_news(finnhub_company_news_body(items))
    assert company.messages == [as_finnhub(n) for n in items] and not company.errors
    body = newsapi.decode_articles(newsapi_body(market_events, total_results=1_000))
    assert body.messages == [as_newsapi(n) for n in items] and not body.errors


@FAST
@given(st.lists(s.order_updates(), max_size=3))
def test_trade_update_frames_decode_back_to_the_updates(updates: list[Any]) -> None:
    decoder = alpaca_trading.TradingStreamDecoder()
    frames = trading_handshake() + trade_update_frames(updates)
    result = decode_all(decoder.decode, frames)
    assert not result.errors
    assert result.messages[2:] == updates
    assert result.messages[0].status == "authorized"


# --- strategies ---------------------------------------------------------------------------------

STRUCT_STRATEGIES = {
    "trades": s.trades,
    "quotes": s.quotes,
    "bars": s.bars,
    "corrections": s.corrections,
    "cancel_errors": s.cancel_errors,
    "lulds": s.lulds,
    "trading_statuses": s.trading_statuses,
    "imbalances": s.imbalances,
    "crypto_trades": s.crypto_trades,
    "crypto_quotes": s.crypto_quotes,
    "crypto_bars": s.crypto_bars,
    "book_levels": s.book_levels,
    "orderbook_updates": s.orderbook_updates,
    "news": s.news,
    "metric_points": s.metric_points,
    "company_metrics": s.company_metrics,
    "orders": s.orders,
    "leg_executions": s.leg_executions,
    "order_updates": s.order_updates,
    "successes": s.successes,
    "stream_errors": s.stream_errors,
    "subscriptions": s.subscriptions,
    "authorizations": s.authorizations,
    "listenings": s.listenings,
    "pings": s.pings,
    "api_errors": s.api_errors,
    "options_trades": s.options_trades,
    "options_quotes": s.options_quotes,
    "finnhub_trades": s.finnhub_trades,
    "finnhub_crypto_trades": s.finnhub_crypto_trades,
}


@pytest.mark.parametrize("name", sorted(STRUCT_STRATEGIES))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_strategy_produces_encodable_values(name: str, data: st.DataObject) -> None:
    value = data.draw(STRUCT_STRATEGIES[name]())
    assert isinstance(value, msgspec.Struct)
    msgspec.json.encode(value)  # finite floats, text without lone surrogates


@FAST
@given(st.one_of(*(f() for f in STRUCT_STRATEGIES.values())))
def test_timestamps_and_integers_stay_in_range(value: Any) -> None:
    def check(node: Any) -> None:
        if isinstance(node, bool):
            return
        if isinstance(node, int):
            assert -(2**63) <= node <= s.INT64_MAX
        elif isinstance(node, float):
            assert np.isfinite(node)
        elif isinstance(node, dict):
            for child in node.values():
                check(child)
        elif isinstance(node, list):
            for child in node:
                check(child)

    check(msgspec.to_builtins(value))
    for name in ("ts_event", "ts_updated", "created_at"):
        ts = getattr(value, name, None)
        assert ts is None or 0 <= ts <= s.TS_MAX


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("stream", ["stocks", "crypto", "options", "news"])
@FAST
@given(data=st.data())
def test_any_alpaca_message_round_trips(stream: Any, encoding: Any, data: st.DataObject) -> None:
    messages = data.draw(st.lists(s.alpaca_messages(stream), max_size=5))
    frame = AlpacaEncoder(stream, encoding).encode(messages)
    result = AlpacaDecoder(stream, encoding).decode(frame)
    assert not result.errors and not result.unknown
    assert result.messages == messages


@FAST
@given(st.lists(s.finnhub_trades() | s.finnhub_crypto_trades(), max_size=5))
def test_any_finnhub_trade_round_trips(trades: list[Any]) -> None:
    assert finnhub.FinnhubDecoder().decode(finnhub.encode_trades(trades)).messages == trades


@FAST
@given(st.lists(s.news("finnhub"), max_size=3), s.news("newsapi"), s.company_metrics())
def test_news_and_metrics_round_trip_through_their_providers(
    finnhub_news: list[News], newsapi_news: News, metrics: Any
) -> None:
    assert finnhub.FinnhubDecoder().decode(finnhub.encode_news(finnhub_news)).messages == (
        finnhub_news
    )
    assert finnhub.decode_company_news(finnhub.encode_company_news(finnhub_news)).messages == (
        finnhub_news
    )
    assert newsapi.decode_articles(newsapi.encode_articles([newsapi_news])).messages == [
        newsapi_news
    ]
    decoded = finnhub.decode_basic_financials(finnhub.encode_basic_financials(metrics))
    assert decoded.messages == [metrics]


@pytest.mark.parametrize("source", s.SOURCES)
@FAST
@given(data=st.data())
def test_valid_frames_decode_cleanly(source: str, data: st.DataObject) -> None:
    result = s.decoder_for(source)(data.draw(s.frames(source)))
    assert not result.errors and not result.unknown


@pytest.mark.parametrize("source", s.SOURCES)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mangled_frames_are_bytes_for_every_source(source: str, data: st.DataObject) -> None:
    # Whether the decoders survive them is tests/codecs/test_fuzz.py's business.
    assert isinstance(data.draw(s.mangled_frames(source)), bytes)


def test_mangled_frames_cover_every_kind_of_damage() -> None:
    source = "alpaca.stocks.json"
    assert s.mangled_frames(source) is s.mangled_frames(source)  # built once, reused
    deep = s._deep_nesting(source)
    huge = s._huge_numbers(source)
    bad_text = s._non_utf8(source)

    @settings(max_examples=20, deadline=None, database=None)
    @given(deep, huge, bad_text)
    def check(nested: bytes, big: bytes, text: bytes) -> None:
        assert nested.count(b"[") + nested.count(b"{") >= 1_000
        assert any(literal in big for literal in s._HUGE_JSON)  # 1e400, 2**64, NaN, ...
        with pytest.raises(UnicodeDecodeError):
            text.decode("utf-8")

    check()
