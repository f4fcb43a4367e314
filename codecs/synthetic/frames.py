"""Events -> wire frames for every source, made with the real encoders (no hand-written JSON).

Each source carries less than the schema can hold (Finnhub has millisecond trade times and no
trade ids; NewsAPI has no symbols; ...). For each one there is a *view* (``alpaca_view``,
``finnhub_view``, ``as_newsapi``): the events as that source would deliver them, which is exactly
what decoding the frames gives back. A round trip is then ``decode(frames(events)) ==
view(events)``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Final

import msgspec

from .. import alpaca_trading, finnhub, newsapi
from ..alpaca import CONTROL_TYPES, STREAM_TYPES, AlpacaEncoder, Encoding, Stream
from ..schema import (
    Authorization,
    CompanyMetrics,
    CryptoTrade,
    Listening,
    News,
    OrderUpdate,
    Subscription,
    Success,
    Trade,
)
from .market import available_at

__all__ = [
    "alpaca_frames",
    "alpaca_handshake",
    "alpaca_view",
    "as_finnhub",
    "as_newsapi",
    "finnhub_basic_financials_body",
    "finnhub_company_news_body",
    "finnhub_crypto_symbol",
    "finnhub_frames",
    "finnhub_view",
    "newsapi_body",
    "trade_update_frames",
    "trading_handshake",
]

NS_PER_MS: Final = 1_000_000
NS_PER_SECOND: Final = 1_000_000_000


@cache
def _encoder(stream: Stream, encoding: Encoding) -> AlpacaEncoder:
    return AlpacaEncoder(stream, encoding)


# --- Alpaca market data -------------------------------------------------------------------------


def alpaca_view(events: Iterable[Any], stream: Stream) -> list[Any]:
    """The events an Alpaca ``stream`` carries (control messages included), in order.

    Other types are left out, so one mixed market feeds every stream; news is only Alpaca's own
    (``provider == "alpaca"``).
    """
    types = STREAM_TYPES[stream] + CONTROL_TYPES
    return [
        e for e in events if type(e) in types and (type(e) is not News or e.provider == "alpaca")
    ]


def alpaca_frames(
    events: Iterable[Any],
    stream: Stream = "stocks",
    encoding: Encoding = "json",
    *,
    batch: int = 100,
    window_ns: int | None = None,
) -> list[bytes]:
    """Frames as the Alpaca server sends them: control messages alone in their frame, data in
    arrays of at most ``batch`` messages, and (with ``window_ns``) a new frame whenever a message
    arrives more than ``window_ns`` after the frame's first one. Events the stream does not carry
    are skipped (see :func:`alpaca_view`)."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    encode = _encoder(stream, encoding).encode
    frames: list[bytes] = []
    pending: list[Any] = []
    first = 0
    for event in alpaca_view(events, stream):
        if isinstance(event, CONTROL_TYPES):
            if pending:
                frames.append(encode(pending))
                pending = []
            frames.append(encode([event]))
            continue
        at = available_at(event)
        if pending and (
            len(pending) >= batch or (window_ns is not None and at - first > window_ns)
        ):
            frames.append(encode(pending))
            pending = []
        if not pending:
            first = at
        pending.append(event)
    if pending:
        frames.append(encode(pending))
    return frames


def alpaca_handshake(
    stream: Stream, encoding: Encoding = "json", subscription: Subscription | None = None
) -> list[bytes]:
    """The server's side of a good session start: connected, authenticated, subscription ack."""
    encode = _encoder(stream, encoding).encode
    frames = [encode([Success("connected")]), encode([Success("authenticated")])]
    if subscription is not None:
        frames.append(encode([subscription]))
    return frames


# --- Finnhub ------------------------------------------------------------------------------------


def finnhub_crypto_symbol(symbol: str, venue: str = "BINANCE") -> str:
    """``BTC/USD`` -> ``BINANCE:BTCUSDT`` (Binance quotes dollars as USDT); prefixed ones as-is."""
    if ":" in symbol:
        return symbol
    base, _, quote = symbol.partition("/")
    quote = "USDT" if quote in ("USD", "") else quote
    return f"{venue}:{base}{quote}"


def _finnhub_news_id(news: News) -> str:
    if news.id.isascii() and news.id.isdigit() and len(news.id) < 19:
        return str(int(news.id))
    return str(zlib.crc32(news.id.encode()))


def as_finnhub(event: Any) -> Any:
    """``event`` as Finnhub delivers it, or ``None`` if Finnhub does not carry it.

    Trades keep symbol, price, size and (equities) conditions, with the time truncated to the
    millisecond; crypto symbols get a venue prefix. News keeps what Finnhub's items hold, with the
    time truncated to the second and a numeric id.
    """
    if type(event) is Trade:
        return Trade(
            symbol=event.symbol,
            ts_event=event.ts_event - event.ts_event % NS_PER_MS,
            price=event.price,
            size=event.size,
            conditions=event.conditions,
        )
    if type(event) is CryptoTrade:
        return CryptoTrade(
            symbol=finnhub_crypto_symbol(event.symbol),
            ts_event=event.ts_event - event.ts_event % NS_PER_MS,
            price=event.price,
            size=event.size,
        )
    if type(event) is News:
        ts = event.ts_event - event.ts_event % NS_PER_SECOND
        return News(
            provider="finnhub",
            id=_finnhub_news_id(event),
            ts_event=ts,
            ts_updated=ts,
            headline=event.headline,
            summary=event.summary,
            url=event.url,
            symbols=tuple(s.strip() for s in event.symbols if s.strip() and "," not in s),
            source=event.source,
            category=event.category,
            image=event.image,
        )
    return None


def finnhub_view(events: Iterable[Any]) -> list[Any]:
    """What a Finnhub websocket delivers for ``events``: :func:`as_finnhub` of those it carries."""
    return [f for f in map(as_finnhub, events) if f is not None]


def finnhub_frames(
    events: Iterable[Any], *, batch: int = 50, ping_every: int | None = None
) -> list[bytes]:
    """Finnhub websocket frames: runs of consecutive trades (at most ``batch`` per frame) and of
    news items, with a ``{"type":"ping"}`` frame after every ``ping_every`` data frames."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    frames: list[bytes] = []
    run: list[Any] = []
    run_kind: type | None = None
    data_frames = 0

    def flush() -> None:
        nonlocal run, data_frames
        if not run:
            return
        if run_kind is News:
            frames.append(finnhub.encode_news(run))
        else:
            frames.append(finnhub.encode_trades(run))
        run = []
        data_frames += 1
        if ping_every and data_frames % ping_every == 0:
            frames.append(msgspec.json.encode({"type": "ping"}))

    for item in finnhub_view(events):
        kind = News if type(item) is News else Trade
        if run and (kind is not run_kind or len(run) >= batch):
            flush()
        run_kind = kind
        run.append(item)
    flush()
    return frames


def finnhub_company_news_body(news: Sequence[News]) -> bytes:
    """A ``/company-news`` body for ``news`` (converted with :func:`as_finnhub`)."""
    return finnhub.encode_company_news([as_finnhub(n) for n in news])


def finnhub_basic_financials_body(metrics: CompanyMetrics) -> bytes:
    """A ``/stock/metric`` body."""
    return finnhub.encode_basic_financials(metrics)


# --- NewsAPI ------------------------------------------------------------------------------------


def as_newsapi(news: News) -> News:
    """``news`` as NewsAPI delivers it: the url is the id, whole-second time, no symbols,
    category or update time."""
    ts = news.ts_event - news.ts_event % NS_PER_SECOND
    url = news.url or f"https://news.example.com/{news.provider}/{news.id}"
    return News(
        provider="newsapi",
        id=url,
        ts_event=ts,
        ts_updated=ts,
        headline=news.headline,
        summary=news.summary,
        author=news.author,
        url=url,
        content=news.content,
        source=news.source,
        image=news.image,
    )


def newsapi_body(news: Iterable[Any], total_results: int | None = None) -> bytes:
    """A ``/v2/everything`` body holding the :class:`News` among ``news`` (via
    :func:`as_newsapi`); other events are skipped."""
    articles = [as_newsapi(n) for n in news if type(n) is News]
    return newsapi.encode_articles(articles, total_results)


# --- Alpaca trading stream ----------------------------------------------------------------------


def trade_update_frames(updates: Iterable[OrderUpdate]) -> list[bytes]:
    """One ``trade_updates`` frame per update, as the trading stream sends them."""
    return [alpaca_trading.encode_trade_update(update) for update in updates]


def trading_handshake(streams: Sequence[str] = ("trade_updates",)) -> list[bytes]:
    """The trading stream's replies to a good start: authorized, then listening."""
    return [
        alpaca_trading.encode_control(Authorization(status="authorized", action="authenticate")),
        alpaca_trading.encode_control(Listening(streams=tuple(streams))),
    ]
