"""Hypothesis strategies for every schema struct and every source's frames, valid and mangled.

Test-only: this module imports Hypothesis (a test dependency), so nothing else in ``tickd``
imports it. What the strategies promise:

* every value is one its wire can carry and give back unchanged: floats are finite, integers fit
  int64, timestamps are integer ns within 1970-2200 (:data:`TS_MAX`), text is valid Unicode (no
  lone surrogates), decimals are finite with at most nine places (``str`` round-trips);
* symbols, ids and codes look like the real ones (with room for the odd one out);
* ``ts_recv`` is 0 (it is not on any wire: decoders stamp the value they are given);
* per-source variants respect what that source can carry: :func:`finnhub_trades` (ms times, no
  ids/exchange/tape), ``news(provider=...)`` (each provider's id and time rules),
  :func:`options_trades`/:func:`options_quotes` (exactly one condition).

:func:`frames` gives valid frames/bodies for a source name in :data:`SOURCES`;
:func:`mangled_frames` gives the same frames damaged the ways real input goes wrong, for fuzzing
(:func:`decoder_for` gives the matching decode function).
"""

from __future__ import annotations

import operator
import string
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any, Final, Literal

import msgspec
from hypothesis import strategies as st

from .. import alpaca_trading, finnhub, newsapi
from ..alpaca import AlpacaDecoder, AlpacaEncoder, Stream
from ..errors import Decoded
from ..schema import (
    ApiError,
    Authorization,
    Bar,
    BookLevel,
    CancelError,
    CompanyMetrics,
    Correction,
    CryptoBar,
    CryptoDailyBar,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
    DailyBar,
    Imbalance,
    LegExecution,
    Listening,
    Luld,
    MetricPoint,
    News,
    Order,
    OrderbookUpdate,
    OrderUpdate,
    Ping,
    Quote,
    StreamError,
    Subscription,
    Success,
    Trade,
    TradingStatus,
    UpdatedBar,
)
from .market import EQUITY_EXCHANGES

__all__ = [
    "INT64_MAX",
    "SOURCES",
    "TS_MAX",
    "alpaca_messages",
    "api_errors",
    "authorizations",
    "bars",
    "book_levels",
    "cancel_errors",
    "company_metrics",
    "control_messages",
    "corrections",
    "crypto_bars",
    "crypto_quotes",
    "crypto_symbols",
    "crypto_trades",
    "decimals",
    "decoder_for",
    "equity_symbols",
    "finnhub_crypto_trades",
    "finnhub_trades",
    "frames",
    "imbalances",
    "leg_executions",
    "listenings",
    "lulds",
    "mangled_frames",
    "metric_points",
    "news",
    "option_symbols",
    "options_quotes",
    "options_trades",
    "order_updates",
    "orderbook_updates",
    "orders",
    "pings",
    "prices",
    "quotes",
    "stream_errors",
    "subscriptions",
    "successes",
    "texts",
    "timestamps",
    "trades",
    "trading_statuses",
]

Provider = Literal["alpaca", "finnhub", "newsapi"]

INT64_MAX: Final = 2**63 - 1
NS_PER_MS: Final = 1_000_000
NS_PER_SECOND: Final = 1_000_000_000
TS_MAX: Final = 7_258_118_400 * NS_PER_SECOND - 1  # 2199-12-31T23:59:59.999999999Z
SOURCES: Final = (
    "alpaca.stocks.json",
    "alpaca.stocks.msgpack",
    "alpaca.crypto.json",
    "alpaca.crypto.msgpack",
    "alpaca.options.json",
    "alpaca.options.msgpack",
    "alpaca.news.json",
    "alpaca.news.msgpack",
    "alpaca.trading.json",
    "finnhub.ws",
    "finnhub.company_news",
    "finnhub.basic_financials",
    "newsapi",
)

# --- building blocks ----------------------------------------------------------------------------


def timestamps(resolution_ns: int = 1) -> st.SearchStrategy[int]:
    """Integer ns within 1970-2200, a multiple of ``resolution_ns``."""
    return st.integers(0, TS_MAX // resolution_ns).map(lambda x: x * resolution_ns)


def _optional_timestamps() -> st.SearchStrategy[int | None]:
    return st.none() | timestamps()


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Arbitrary valid Unicode text (no lone surrogates)."""
    return st.text(max_size=max_size)


def prices() -> st.SearchStrategy[float]:
    """Non-negative finite prices: mostly on a cent or finer grid, sometimes any float."""
    return st.one_of(
        st.integers(0, 10**9).map(lambda cents: cents / 100),
        st.integers(0, 10**12).map(lambda units: units / 10**8),
        st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False),
    )


def _finite() -> st.SearchStrategy[float]:
    return st.floats(allow_nan=False, allow_infinity=False)


def _int64(min_value: int = 0) -> st.SearchStrategy[int]:
    return st.integers(min_value, INT64_MAX)


def _sizes() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, 10**6), _int64())


def _fractional_sizes() -> st.SearchStrategy[float]:
    return st.one_of(
        st.integers(0, 10**14).map(lambda units: units / 10**8),
        st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
    )


def decimals(max_abs: int = 10**12) -> st.SearchStrategy[Decimal]:
    """Finite decimals with 0-9 places: what Alpaca sends as decimal strings."""
    return st.integers(0, 9).flatmap(
        lambda places: st.decimals(
            min_value=-max_abs,
            max_value=max_abs,
            places=places,
            allow_nan=False,
            allow_infinity=False,
        )
    )


def _letters(
    min_size: int, max_size: int, alphabet: str = string.ascii_uppercase
) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


def equity_symbols() -> st.SearchStrategy[str]:
    """``AAPL``, ``BRK.B``-like symbols."""
    return st.one_of(
        st.sampled_from(("AAPL", "MSFT", "NVDA", "SPY", "TSLA", "BRK.B")),
        st.builds(operator.add, _letters(1, 5), st.sampled_from(("", "", "", ".A", ".B"))),
    )


def crypto_symbols() -> st.SearchStrategy[str]:
    """``BTC/USD``-like pairs."""
    return st.one_of(
        st.sampled_from(("BTC/USD", "ETH/USD", "SOL/USDT", "ETH/BTC")),
        st.builds("{}/{}".format, _letters(2, 6), st.sampled_from(("USD", "USDT", "USDC", "BTC"))),
    )


def option_symbols() -> st.SearchStrategy[str]:
    """OCC option symbols: root, YYMMDD, C/P, strike x 1000 in 8 digits."""
    return st.builds(
        lambda root, date, right, strike: f"{root}{date}{right}{strike:08d}",
        _letters(1, 6),
        st.dates().map(lambda d: d.strftime("%y%m%d")),
        st.sampled_from("CP"),
        st.integers(0, 99_999_999),
    )


def _symbols() -> st.SearchStrategy[str]:
    return st.one_of(equity_symbols(), crypto_symbols())


_TRADE_CONDITIONS: Final = ("@", "I", "F", "T", "Z", "4", "B", "W", "U", "O", "6", "7", "M")
_OPTION_CONDITIONS: Final = ("I", "J", "S", "a", "b", "f", "g", "h", "e", "C", "A")


def _conditions() -> st.SearchStrategy[tuple[str, ...]]:
    code = st.sampled_from(_TRADE_CONDITIONS) | texts(3)
    return st.lists(code, max_size=4).map(tuple)


def _exchanges() -> st.SearchStrategy[str]:
    return st.sampled_from(("", *EQUITY_EXCHANGES)) | texts(2)


def _tapes() -> st.SearchStrategy[str]:
    return st.sampled_from(("", "A", "B", "C", "O"))


# --- market data --------------------------------------------------------------------------------


def trades(
    symbols: st.SearchStrategy[str] | None = None,
    conditions: st.SearchStrategy[tuple[str, ...]] | None = None,
) -> st.SearchStrategy[Trade]:
    return st.builds(
        Trade,
        symbol=symbols if symbols is not None else equity_symbols(),
        ts_event=timestamps(),
        price=prices(),
        size=_sizes(),
        trade_id=_int64(),
        exchange=_exchanges(),
        conditions=conditions if conditions is not None else _conditions(),
        tape=_tapes(),
    )


def quotes(
    symbols: st.SearchStrategy[str] | None = None,
    conditions: st.SearchStrategy[tuple[str, ...]] | None = None,
) -> st.SearchStrategy[Quote]:
    return st.builds(
        Quote,
        symbol=symbols if symbols is not None else equity_symbols(),
        ts_event=timestamps(),
        bid_price=prices(),
        bid_size=_sizes(),
        ask_price=prices(),
        ask_size=_sizes(),
        bid_exchange=_exchanges(),
        ask_exchange=_exchanges(),
        conditions=conditions if conditions is not None else _conditions(),
        tape=_tapes(),
    )


def _one_option_condition() -> st.SearchStrategy[tuple[str, ...]]:
    code = st.sampled_from(_OPTION_CONDITIONS) | texts(3).filter(bool)
    return code.map(lambda c: (c,))


def options_trades() -> st.SearchStrategy[Trade]:
    """Option trades: OCC symbols, exactly one (non-empty) condition, as the options feed sends."""
    return trades(option_symbols(), _one_option_condition())


def options_quotes() -> st.SearchStrategy[Quote]:
    """Option quotes: OCC symbols, exactly one (non-empty) condition."""
    return quotes(option_symbols(), _one_option_condition())


def bars(symbols: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Bar]:
    """Minute, updated and daily equity bars (the kind is the class)."""
    return st.sampled_from((Bar, UpdatedBar, DailyBar)).flatmap(
        lambda cls: st.builds(
            cls,
            symbol=symbols if symbols is not None else equity_symbols(),
            ts_event=timestamps(),
            open=prices(),
            high=prices(),
            low=prices(),
            close=prices(),
            volume=_sizes(),
            trade_count=st.none() | _int64(),
            vwap=st.none() | prices(),
        )
    )


def corrections() -> st.SearchStrategy[Correction]:
    return st.builds(
        Correction,
        symbol=equity_symbols(),
        ts_event=timestamps(),
        exchange=_exchanges(),
        original_id=_int64(),
        original_price=prices(),
        original_size=_sizes(),
        corrected_id=_int64(),
        corrected_price=prices(),
        corrected_size=_sizes(),
        original_conditions=_conditions(),
        corrected_conditions=_conditions(),
        tape=_tapes(),
    )


def cancel_errors() -> st.SearchStrategy[CancelError]:
    return st.builds(
        CancelError,
        symbol=equity_symbols(),
        ts_event=timestamps(),
        trade_id=_int64(),
        exchange=_exchanges(),
        price=prices(),
        size=_sizes(),
        action=st.sampled_from(("C", "E")) | texts(2),
        tape=_tapes(),
    )


def lulds() -> st.SearchStrategy[Luld]:
    return st.builds(
        Luld,
        symbol=equity_symbols(),
        ts_event=timestamps(),
        limit_up=prices(),
        limit_down=prices(),
        indicator=st.sampled_from(("A", "B", "C", "D")) | texts(2),
        tape=_tapes(),
    )


def trading_statuses() -> st.SearchStrategy[TradingStatus]:
    return st.builds(
        TradingStatus,
        symbol=equity_symbols(),
        ts_event=timestamps(),
        status_code=st.sampled_from(("H", "T", "Q", "P", "2", "3")) | texts(4),
        status_message=texts(),
        reason_code=st.sampled_from(("", "LUDP", "T1", "T12", "M", "D")) | texts(4),
        reason_message=texts(),
        tape=_tapes(),
    )


def imbalances() -> st.SearchStrategy[Imbalance]:
    return st.builds(
        Imbalance, symbol=equity_symbols(), ts_event=timestamps(), price=prices(), tape=_tapes()
    )


def crypto_trades(symbols: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[CryptoTrade]:
    return st.builds(
        CryptoTrade,
        symbol=symbols if symbols is not None else crypto_symbols(),
        ts_event=timestamps(),
        price=prices(),
        size=_fractional_sizes(),
        trade_id=_int64(),
        taker_side=st.sampled_from(("", "B", "S")),
        exchange=st.sampled_from(("", "CBSE", "ERSX", "FTXU")),
    )


def crypto_quotes() -> st.SearchStrategy[CryptoQuote]:
    return st.builds(
        CryptoQuote,
        symbol=crypto_symbols(),
        ts_event=timestamps(),
        bid_price=prices(),
        bid_size=_fractional_sizes(),
        ask_price=prices(),
        ask_size=_fractional_sizes(),
    )


def crypto_bars() -> st.SearchStrategy[CryptoBar]:
    """Minute, updated and daily crypto bars (the kind is the class)."""
    return st.sampled_from((CryptoBar, CryptoUpdatedBar, CryptoDailyBar)).flatmap(
        lambda cls: st.builds(
            cls,
            symbol=crypto_symbols(),
            ts_event=timestamps(),
            open=prices(),
            high=prices(),
            low=prices(),
            close=prices(),
            volume=_fractional_sizes(),
            trade_count=st.none() | _int64(),
            vwap=st.none() | prices(),
        )
    )


def book_levels() -> st.SearchStrategy[BookLevel]:
    return st.builds(BookLevel, prices(), _fractional_sizes())


def orderbook_updates() -> st.SearchStrategy[OrderbookUpdate]:
    levels = st.lists(book_levels(), max_size=6).map(tuple)
    return st.builds(
        OrderbookUpdate,
        symbol=crypto_symbols(),
        ts_event=timestamps(),
        bids=levels,
        asks=levels,
        reset=st.booleans(),
    )


# --- news and fundamentals ----------------------------------------------------------------------


def _urls() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(
            lambda host, path: f"https://{host}/{path}",
            st.sampled_from(("www.benzinga.com", "www.reuters.com", "finnhub.io")),
            st.text(alphabet=string.ascii_lowercase + string.digits + "/-", max_size=40),
        ),
        texts(60),
    )


def _numeric_ids() -> st.SearchStrategy[str]:
    return _int64().map(str)


def news(provider: Provider | None = None) -> st.SearchStrategy[News]:
    """News items a provider can carry (``None``: any provider).

    * ``alpaca``: integer id, ns times (created and updated may differ), no category or image;
    * ``finnhub``: integer id, whole seconds, updated == created, no author or content,
      symbols without commas;
    * ``newsapi``: id == url, whole seconds, updated == created, no symbols or category.
    """
    if provider is None:
        return st.one_of(news("alpaca"), news("finnhub"), news("newsapi"))
    symbols = st.lists(_symbols(), max_size=3).map(tuple)
    if provider == "alpaca":
        return st.builds(
            News,
            provider=st.just("alpaca"),
            id=_numeric_ids(),
            ts_event=timestamps(),
            ts_updated=timestamps(),
            headline=texts(),
            summary=texts(),
            author=texts(),
            url=_urls(),
            content=texts(),
            symbols=symbols,
            source=texts(),
        )
    if provider == "finnhub":
        return st.builds(
            lambda ts, **kw: News(provider="finnhub", ts_event=ts, ts_updated=ts, **kw),
            timestamps(NS_PER_SECOND),
            id=_numeric_ids(),
            headline=texts(),
            summary=texts(),
            url=_urls(),
            symbols=symbols,
            source=texts(),
            category=st.sampled_from(("company", "general", "top news")) | texts(),
            image=_urls(),
        )
    return st.builds(
        lambda ts, url, **kw: News(
            provider="newsapi", id=url, url=url, ts_event=ts, ts_updated=ts, **kw
        ),
        timestamps(NS_PER_SECOND),
        _urls(),
        headline=texts(),
        summary=texts(),
        author=texts(),
        content=texts(),
        source=texts(),
        image=_urls(),
    )


def _periods() -> st.SearchStrategy[str]:
    return st.dates().map(lambda d: d.isoformat())


def metric_points() -> st.SearchStrategy[MetricPoint]:
    return st.builds(MetricPoint, _periods(), _finite())


def company_metrics() -> st.SearchStrategy[CompanyMetrics]:
    names = st.sampled_from(("peTTM", "epsTTM", "52WeekHigh", "beta", "currentRatio")) | texts(12)
    values: st.SearchStrategy[float | str | None] = st.one_of(st.none(), _finite(), texts(10))
    points = st.lists(metric_points(), max_size=4).map(tuple)
    return st.builds(
        CompanyMetrics,
        symbol=equity_symbols(),
        metric_type=st.just("all") | texts(5),
        metrics=st.dictionaries(names, values, max_size=6),
        series=st.dictionaries(
            st.sampled_from(("annual", "quarterly")),
            st.dictionaries(names, points, max_size=3),
            max_size=2,
        ),
    )


# --- orders (trade_updates) ---------------------------------------------------------------------

_EVENTS: Final = (
    "new",
    "fill",
    "partial_fill",
    "canceled",
    "expired",
    "done_for_day",
    "replaced",
    "rejected",
    "pending_new",
    "stopped",
    "pending_cancel",
    "pending_replace",
    "calculated",
    "suspended",
    "order_replace_rejected",
    "order_cancel_rejected",
)


def _uuids() -> st.SearchStrategy[str]:
    return st.uuids().map(str)


def _words(*choices: str) -> st.SearchStrategy[str]:
    return st.sampled_from(choices) | texts(12)


def _optional_decimals() -> st.SearchStrategy[Decimal | None]:
    return st.none() | decimals()


def orders(legs: bool = True) -> st.SearchStrategy[Order]:
    """Alpaca orders; with ``legs``, possibly a multi-leg order whose legs have no legs."""
    return st.builds(
        Order,
        id=_uuids(),
        client_order_id=_uuids() | texts(),
        symbol=equity_symbols() | crypto_symbols() | option_symbols(),
        asset_id=_uuids() | st.just(""),
        asset_class=_words("us_equity", "crypto", "us_option", ""),
        side=_words("buy", "sell", ""),
        order_type=_words("market", "limit", "stop", "stop_limit", "trailing_stop", ""),
        order_class=_words("", "simple", "bracket", "oco", "oto", "mleg"),
        time_in_force=_words("day", "gtc", "opg", "cls", "ioc", "fok"),
        status=_words("new", "accepted", "partially_filled", "filled", "canceled", "expired"),
        extended_hours=st.booleans(),
        qty=_optional_decimals(),
        notional=_optional_decimals(),
        filled_qty=_optional_decimals(),
        filled_avg_price=_optional_decimals(),
        limit_price=_optional_decimals(),
        stop_price=_optional_decimals(),
        trail_price=_optional_decimals(),
        trail_percent=_optional_decimals(),
        hwm=_optional_decimals(),
        ratio_qty=_optional_decimals(),
        created_at=_optional_timestamps(),
        updated_at=_optional_timestamps(),
        submitted_at=_optional_timestamps(),
        filled_at=_optional_timestamps(),
        expired_at=_optional_timestamps(),
        canceled_at=_optional_timestamps(),
        cancel_requested_at=_optional_timestamps(),
        failed_at=_optional_timestamps(),
        replaced_at=_optional_timestamps(),
        replaced_by=st.none() | _uuids(),
        replaces=st.none() | _uuids(),
        legs=st.none() | st.lists(orders(legs=False), max_size=3).map(tuple) if legs else st.none(),
    )


def leg_executions() -> st.SearchStrategy[LegExecution]:
    return st.builds(
        LegExecution,
        execution_id=_uuids(),
        order_id=_uuids(),
        symbol=option_symbols() | equity_symbols(),
        qty=decimals(),
        price=decimals(),
        ts_event=timestamps(),
    )


def order_updates() -> st.SearchStrategy[OrderUpdate]:
    return st.builds(
        OrderUpdate,
        event=_words(*_EVENTS),
        order=orders(),
        ts_event=_optional_timestamps(),
        execution_id=st.none() | _uuids(),
        price=_optional_decimals(),
        qty=_optional_decimals(),
        position_qty=_optional_decimals(),
        event_id=st.none() | _letters(26, 26, string.digits + string.ascii_uppercase),
        ts_at=_optional_timestamps(),
        position_qtys=st.none() | st.dictionaries(_symbols(), decimals(), max_size=3),
        leg_executions=st.none() | st.lists(leg_executions(), max_size=3).map(tuple),
    )


# --- control messages ---------------------------------------------------------------------------


def successes() -> st.SearchStrategy[Success]:
    return st.builds(Success, st.sampled_from(("connected", "authenticated")) | texts())


_ALPACA_ERROR_CODES: Final = (400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413)


def stream_errors() -> st.SearchStrategy[StreamError]:
    codes = st.sampled_from((*_ALPACA_ERROR_CODES, 500, 0)) | _int64()
    return st.builds(StreamError, codes, texts())


def subscriptions() -> st.SearchStrategy[Subscription]:
    channel = st.none() | st.lists(_symbols() | st.just("*"), max_size=4).map(tuple)
    return st.builds(
        Subscription,
        trades=channel,
        quotes=channel,
        bars=channel,
        updated_bars=channel,
        daily_bars=channel,
        statuses=channel,
        lulds=channel,
        corrections=channel,
        cancel_errors=channel,
        imbalances=channel,
        orderbooks=channel,
        news=channel,
    )


def authorizations() -> st.SearchStrategy[Authorization]:
    return st.builds(
        Authorization,
        status=_words("authorized", "unauthorized"),
        action=_words("authenticate", "listen"),
        message=texts(),
    )


def listenings() -> st.SearchStrategy[Listening]:
    return st.builds(Listening, streams=st.lists(_words("trade_updates"), max_size=2).map(tuple))


def pings() -> st.SearchStrategy[Ping]:
    return st.builds(Ping)


def api_errors() -> st.SearchStrategy[ApiError]:
    return st.builds(
        ApiError,
        provider=st.just("newsapi"),
        code=_words("apiKeyInvalid", "apiKeyMissing", "rateLimited", "parameterInvalid"),
        message=texts(),
    )


def control_messages() -> st.SearchStrategy[Success | StreamError | Subscription]:
    """The control messages an Alpaca market-data stream sends."""
    return st.one_of(successes(), stream_errors(), subscriptions())


# --- per source ---------------------------------------------------------------------------------


def finnhub_trades() -> st.SearchStrategy[Trade]:
    """Equity trades as Finnhub carries them: ms times, symbol/price/size/conditions only, sizes a
    float can hold exactly (Finnhub's ``v`` is a JSON number)."""
    return st.builds(
        Trade,
        symbol=equity_symbols(),
        ts_event=timestamps(NS_PER_MS),
        price=prices(),
        size=st.integers(0, 2**53),
        conditions=st.lists(st.sampled_from(("1", "8", "12", "24")) | texts(3), max_size=3).map(
            tuple
        ),
    )


def finnhub_crypto_trades() -> st.SearchStrategy[CryptoTrade]:
    """Venue-prefixed trades (``BINANCE:BTCUSDT``) as Finnhub carries them: ms times."""
    return st.builds(
        CryptoTrade,
        symbol=st.builds(
            "{}:{}".format,
            st.sampled_from(("BINANCE", "COINBASE", "OANDA")),
            _letters(2, 12, string.ascii_uppercase + string.digits + "_"),
        ),
        ts_event=timestamps(NS_PER_MS),
        price=prices(),
        size=_fractional_sizes(),
    )


@cache
def alpaca_messages(stream: Stream) -> st.SearchStrategy[Any]:
    """Any message an Alpaca market-data ``stream`` carries, control messages included."""
    data: list[st.SearchStrategy[Any]]
    if stream == "stocks":
        data = [
            trades(),
            quotes(),
            bars(),
            corrections(),
            cancel_errors(),
            lulds(),
            trading_statuses(),
            imbalances(),
        ]
    elif stream == "crypto":
        data = [crypto_trades(), crypto_quotes(), crypto_bars(), orderbook_updates()]
    elif stream == "options":
        data = [options_trades(), options_quotes()]
    elif stream == "news":
        data = [news("alpaca")]
    else:
        raise ValueError(f"unknown Alpaca stream {stream!r}")
    return st.one_of(*data, control_messages())


# --- frames -------------------------------------------------------------------------------------


def _alpaca_frames(
    stream: Stream, encoding: Literal["json", "msgpack"]
) -> st.SearchStrategy[bytes]:
    encoder = AlpacaEncoder(stream, encoding)
    return st.lists(alpaca_messages(stream), max_size=5).map(encoder.encode)


def _finnhub_ws_frames() -> st.SearchStrategy[bytes]:
    trade_items = st.lists(finnhub_trades() | finnhub_crypto_trades(), max_size=5)
    return st.one_of(
        trade_items.map(finnhub.encode_trades),
        st.lists(news("finnhub"), max_size=4).map(finnhub.encode_news),
        st.just(msgspec.json.encode({"type": "ping"})),
        texts().map(lambda msg: msgspec.json.encode({"type": "error", "msg": msg})),
    )


def _trading_frames() -> st.SearchStrategy[bytes]:
    return st.one_of(
        order_updates().map(alpaca_trading.encode_trade_update),
        st.one_of(authorizations(), listenings(), stream_errors()).map(
            alpaca_trading.encode_control
        ),
    )


@cache
def frames(source: str) -> st.SearchStrategy[bytes]:
    """Valid frames (or REST bodies) of ``source`` (one of :data:`SOURCES`), made with the
    source's own encoder."""
    if source.startswith("alpaca.") and source != "alpaca.trading.json":
        _, stream, encoding = source.split(".")
        if stream not in ("stocks", "crypto", "options", "news") or encoding not in (
            "json",
            "msgpack",
        ):
            raise ValueError(f"unknown source {source!r}")
        return _alpaca_frames(stream, encoding)  # type: ignore[arg-type]
    if source == "alpaca.trading.json":
        return _trading_frames()
    if source == "finnhub.ws":
        return _finnhub_ws_frames()
    if source == "finnhub.company_news":
        return st.lists(news("finnhub"), max_size=5).map(finnhub.encode_company_news)
    if source == "finnhub.basic_financials":
        return company_metrics().map(finnhub.encode_basic_financials)
    if source == "newsapi":
        return st.one_of(
            st.builds(
                newsapi.encode_articles,
                st.lists(news("newsapi"), max_size=5),
                st.none() | st.integers(0, 10**6),
            ),
            api_errors().map(newsapi.encode_error),
        )
    raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")


def decoder_for(source: str) -> Callable[[bytes], Decoded]:
    """The decode function for frames of ``source``: ``decoder_for(s)(frame) -> Decoded``."""
    if source.startswith("alpaca.") and source != "alpaca.trading.json":
        _, stream, encoding = source.split(".")
        return AlpacaDecoder(stream, encoding).decode  # type: ignore[arg-type]
    decoders: dict[str, Callable[[bytes], Decoded]] = {
        "alpaca.trading.json": alpaca_trading.TradingStreamDecoder().decode,
        "finnhub.ws": finnhub.FinnhubDecoder().decode,
        "finnhub.company_news": finnhub.decode_company_news,
        "finnhub.basic_financials": finnhub.decode_basic_financials,
        "newsapi": newsapi.decode_articles,
    }
    if source not in decoders:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    return decoders[source]


# --- mangling -----------------------------------------------------------------------------------

_HUGE: Final = "\x00tickd-huge\x00"
_BAD_UTF8: Final = "\x00tickd-utf8\x00"
_HUGE_JSON: Final = (
    b"1e400",
    b"-1e400",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"9223372036854775808",
    b"1" + b"0" * 400,
    b"NaN",
    b"Infinity",
)
_HUGE_MSGPACK: Final = (2**64 - 1, 2**63, -(2**63), float("inf"), float("nan"), 1.7e308)
_INVALID_UTF8: Final = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")
_TAG_KEYS: Final = ("T", "type", "stream", "action", "status")
_KNOWN_TAGS: Final = frozenset(
    {
        *"tqbudcxlsion",
        "success",
        "error",
        "subscription",
        "trade",
        "news",
        "pr",
        "ping",
        "trade_updates",
        "authorization",
        "listening",
        "ok",
    }
)


def _encoding(source: str) -> Literal["json", "msgpack"]:
    return "msgpack" if source.endswith(".msgpack") else "json"


def _decode_any(frame: bytes, encoding: str) -> Any:
    if encoding == "json":
        return msgspec.json.decode(frame)
    return msgspec.msgpack.decode(frame)


def _encode_any(value: Any, encoding: str) -> bytes:
    if encoding == "json":
        return msgspec.json.encode(value)
    return msgspec.msgpack.encode(value)


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a decoded JSON/msgpack tree, parents before children."""
    out: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        items: Any = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in items:
            out.append((node, key))
            stack.append(child)
    return out


def _wrong_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), INT64_MAX),
        _finite(),
        texts(8),
        st.lists(st.integers(0, 9), max_size=3),
        st.dictionaries(texts(4), st.integers(0, 9), max_size=2),
    )


@st.composite
def _replace_somewhere(
    draw: st.DrawFn, source: str, value: st.SearchStrategy[Any], where: Callable[[Any, Any], bool]
) -> bytes:
    """A valid frame with one slot (chosen among those ``where`` accepts) replaced by a value."""
    encoding = _encoding(source)
    frame = draw(frames(source))
    tree = _decode_any(frame, encoding)
    slots = [(c, k) for c, k in _slots(tree) if where(c, k)]
    if not slots:
        if isinstance(tree, list):
            tree.append({"T": draw(value)})
        elif isinstance(tree, dict):
            tree["data"] = draw(value)
        return _encode_any(tree, encoding)
    container, key = draw(st.sampled_from(slots))
    container[key] = draw(value)
    return _encode_any(tree, encoding)


def _truncated(source: str) -> st.SearchStrategy[bytes]:
    return frames(source).flatmap(lambda f: st.integers(0, max(0, len(f) - 1)).map(lambda n: f[:n]))


@st.composite
def _flipped(draw: st.DrawFn, source: str) -> bytes:
    frame = bytearray(draw(frames(source)))
    if not frame:
        return b"\xff"
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(frame) - 1))
        frame[position] ^= draw(st.integers(1, 255))
    return bytes(frame)


@st.composite
def _huge_numbers(draw: st.DrawFn, source: str) -> bytes:
    encoding = _encoding(source)
    if encoding == "msgpack":
        return draw(
            _replace_somewhere(
                source,
                st.sampled_from(_HUGE_MSGPACK),
                lambda c, k: isinstance(c[k], int | float) and not isinstance(c[k], bool),
            )
        )
    frame = draw(
        _replace_somewhere(source, st.just(_HUGE), lambda c, k: isinstance(c[k], int | float | str))
    )
    literal = draw(st.sampled_from(_HUGE_JSON))
    return frame.replace(msgspec.json.encode(_HUGE), literal)


@st.composite
def _deep_nesting(draw: st.DrawFn, source: str) -> bytes:
    depth = draw(st.sampled_from((1_000, 10_000, 100_000)))
    if _encoding(source) == "msgpack":
        nested = b"\x91" * depth + b"\x90"  # fixarray(1) ... then an empty array
        return nested if draw(st.booleans()) else b"\x81\xa1T" + nested  # {"T": [[[...]]]}
    opener, closer = draw(st.sampled_from(((b"[", b"]"), (b'{"a":', b"}"))))
    nested = opener * depth + b"0" + closer * depth
    wrapped = draw(st.sampled_from((b"%s", b'[{"T":"t","S":%s}]', b'{"type":"trade","data":%s}')))
    return wrapped.replace(b"%s", nested)


def _unknown_tags(source: str) -> st.SearchStrategy[bytes]:
    tag = texts(12).filter(lambda t: t not in _KNOWN_TAGS)
    return _replace_somewhere(source, tag, lambda c, k: isinstance(c, dict) and k in _TAG_KEYS)


@st.composite
def _non_utf8(draw: st.DrawFn, source: str) -> bytes:
    frame = draw(_replace_somewhere(source, st.just(_BAD_UTF8), lambda c, k: isinstance(c[k], str)))
    bad = draw(st.sampled_from(_INVALID_UTF8))
    if _encoding(source) == "json":
        marker = msgspec.json.encode(_BAD_UTF8)
        return frame.replace(marker, b'"' + bad + b'"')
    marker = msgspec.msgpack.encode(_BAD_UTF8)
    # Same length keeps the msgpack str header valid: pad the bad bytes with spaces.
    replacement = marker[:1] + (bad + b" " * len(marker))[: len(marker) - 1]
    return frame.replace(marker, replacement)


def _empty() -> st.SearchStrategy[bytes]:
    return st.sampled_from((b"", b" ", b"\n", b"null", b"[]", b"{}", b"\xc0", b"\x90", b"\x80"))


@cache
def mangled_frames(source: str) -> st.SearchStrategy[bytes]:
    """Frames of ``source`` damaged the ways real input goes wrong: truncated, bytes flipped, a
    field of the wrong type, numbers beyond int64/float range (``1e400``), deep nesting (up to
    100 000 levels), unknown message types, invalid UTF-8, and empty or trivial input. A decoder
    must answer each with a :class:`Decoded` (errors, unknown), never an exception."""
    return st.one_of(
        _truncated(source),
        _flipped(source),
        _replace_somewhere(source, _wrong_values(), lambda c, k: True),
        _huge_numbers(source),
        _deep_nesting(source),
        _unknown_tags(source),
        _non_utf8(source),
        _empty(),
    )
