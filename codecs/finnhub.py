"""Finnhub: websocket frames (trades, news, press releases, ping, error) and the REST bodies the
daemon polls (company news, basic financials), both ways.

Finnhub sends Unix *milliseconds* for trades and Unix *seconds* for news. A symbol with a venue
prefix (``BINANCE:BTCUSDT``, ``OANDA:EUR_USD``) trades in fractions and becomes a
:class:`CryptoTrade`; a plain equity symbol becomes a :class:`Trade` with whole-share size, and a
fractional size on an equity symbol is reported as a bad message rather than truncated.
"""

from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import msgspec
from msgspec import Struct

from .errors import DECODE_ERRORS, Decoded, DecodeError, DecodeStats, UnknownMessage, excerpt
from .schema import (
    CompanyMetrics,
    CryptoTrade,
    MetricPoint,
    News,
    Ping,
    StreamError,
    Trade,
)

__all__ = [
    "FinnhubDecoder",
    "FinnhubRequest",
    "decode_basic_financials",
    "decode_client_message",
    "decode_company_news",
    "encode_basic_financials",
    "encode_client_message",
    "encode_company_news",
    "encode_news",
    "encode_trades",
]

NS_PER_MS: Final = 1_000_000
NS_PER_S: Final = 1_000_000_000
_MAX_MS: Final = (2**63 - 1) // NS_PER_MS
_MAX_S: Final = (2**63 - 1) // NS_PER_S
SOURCE_WS: Final = "finnhub.ws"
SOURCE_REST: Final = "finnhub.rest"


class _Head(Struct, gc=False):
    type: str


class _Envelope(Struct):
    type: str
    data: list[msgspec.Raw] = []
    msg: str = ""


class _TradeWire(Struct, gc=False):
    s: str
    p: float
    t: int
    v: float
    c: list[str] | None = None


class _NewsWire(Struct, kw_only=True):
    id: int
    datetime: int
    headline: str
    category: str | None = None
    image: str | None = None
    related: str | None = None
    source: str | None = None
    summary: str | None = None
    url: str | None = None


class _PressReleaseWire(Struct, kw_only=True):
    datetime: int
    headline: str
    url: str
    symbol: str | None = None
    fullText: str | None = None  # noqa: N815 - wire name


class _MetricsWire(Struct, kw_only=True):
    symbol: str
    metricType: str = ""  # noqa: N815 - wire name
    metric: dict[str, float | str | None] = {}
    series: dict[str, dict[str, list[MetricPoint]]] = {}


class _ItemError(ValueError):
    """A single data item that decoded but makes no sense (e.g. a fractional equity size)."""


def _symbols(related: str | None) -> tuple[str, ...]:
    if not related:
        return ()
    return tuple(s for s in (part.strip() for part in related.split(",")) if s)


def _check_range(value: int, limit: int, what: str) -> int:
    if not 0 <= value <= limit:
        raise _ItemError(f"{what} out of range: {value}")
    return value


def _trade(wire: _TradeWire, ts_recv: int) -> Trade | CryptoTrade:
    ts = _check_range(wire.t, _MAX_MS, "t (ms)") * NS_PER_MS
    if ":" in wire.s:
        return CryptoTrade(symbol=wire.s, ts_event=ts, price=wire.p, size=wire.v, ts_recv=ts_recv)
    if not wire.v.is_integer():
        raise _ItemError(f"fractional size {wire.v!r} for equity symbol {wire.s!r}")
    if not 0 <= wire.v < 2**63:
        raise _ItemError(f"size out of range: {wire.v!r}")
    return Trade(
        symbol=wire.s,
        ts_event=ts,
        price=wire.p,
        size=int(wire.v),
        conditions=tuple(wire.c or ()),
        ts_recv=ts_recv,
    )


def _news(wire: _NewsWire, ts_recv: int) -> News:
    ts = _check_range(wire.datetime, _MAX_S, "datetime (s)") * NS_PER_S
    return News(
        provider="finnhub",
        id=str(wire.id),
        ts_event=ts,
        ts_updated=ts,
        headline=wire.headline,
        summary=wire.summary or "",
        url=wire.url or "",
        symbols=_symbols(wire.related),
        source=wire.source or "",
        category=wire.category or "",
        image=wire.image or "",
        ts_recv=ts_recv,
    )


def _press_release(wire: _PressReleaseWire, ts_recv: int) -> News:
    ts = _check_range(wire.datetime, _MAX_S, "datetime (s)") * NS_PER_S
    return News(
        provider="finnhub",
        id=wire.url,
        ts_event=ts,
        ts_updated=ts,
        headline=wire.headline,
        url=wire.url,
        content=wire.fullText or "",  # a link to the full text, as Finnhub sends it
        symbols=_symbols(wire.symbol),
        category="press_release",
        ts_recv=ts_recv,
    )


_ITEMS: Final[dict[str, tuple[Any, Any]]] = {
    "trade": (msgspec.json.Decoder(_TradeWire), _trade),
    "news": (msgspec.json.Decoder(_NewsWire), _news),
    "pr": (msgspec.json.Decoder(_PressReleaseWire), _press_release),
}
_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_TRADES_FAST: Final = msgspec.json.Decoder(list[_TradeWire])


def _decode_items(
    raws: Iterable[msgspec.Raw], kind: str, source: str, ts_recv: int, result: Decoded
) -> None:
    decoder, convert = _ITEMS[kind]
    for index, raw in enumerate(raws):
        try:
            result.messages.append(convert(decoder.decode(raw), ts_recv))
        except (*DECODE_ERRORS, _ItemError) as exc:
            result.errors.append(
                DecodeError(
                    source=source, reason=f"{kind}: {exc}", excerpt=excerpt(raw), index=index
                )
            )


class FinnhubDecoder:
    """Decode Finnhub websocket frames (one JSON object each); never raises on bad input."""

    source: Final = SOURCE_WS

    def __init__(self) -> None:
        self.stats = DecodeStats()

    def decode(self, frame: bytes | bytearray | memoryview | str, ts_recv: int = 0) -> Decoded:
        result = Decoded()
        try:
            envelope = _ENVELOPE.decode(frame)
        except DECODE_ERRORS as exc:
            result.errors.append(
                DecodeError(
                    source=self.source,
                    reason=f"not a Finnhub message: {exc}",
                    excerpt=excerpt(frame),
                )
            )
            return self.stats.record(result)
        kind = envelope.type
        if kind in _ITEMS:
            _decode_items(envelope.data, kind, self.source, ts_recv, result)
        elif kind == "ping":
            result.messages.append(Ping(ts_recv=ts_recv))
        elif kind == "error":
            result.messages.append(StreamError(code=0, msg=envelope.msg))
        else:
            result.unknown.append(UnknownMessage(source=self.source, type=kind, raw=excerpt(frame)))
        return self.stats.record(result)


def decode_company_news(body: bytes | str, ts_recv: int = 0) -> Decoded:
    """``GET /company-news``: a JSON array of news items."""
    result = Decoded()
    try:
        raws = _RAW_LIST.decode(body)
    except DECODE_ERRORS as exc:
        result.errors.append(
            DecodeError(
                source=SOURCE_REST,
                reason=f"company news is not an array: {exc}",
                excerpt=excerpt(body),
            )
        )
        return result
    _decode_items(raws, "news", SOURCE_REST, ts_recv, result)
    return result


_METRICS: Final = msgspec.json.Decoder(_MetricsWire)


def decode_basic_financials(body: bytes | str, ts_recv: int = 0) -> Decoded:
    """``GET /stock/metric?metric=all``: one :class:`CompanyMetrics`."""
    result = Decoded()
    try:
        wire = _METRICS.decode(body)
    except DECODE_ERRORS as exc:
        result.errors.append(
            DecodeError(
                source=SOURCE_REST, reason=f"basic financials: {exc}", excerpt=excerpt(body)
            )
        )
        return result
    result.messages.append(
        CompanyMetrics(
            symbol=wire.symbol,
            metric_type=wire.metricType,
            metrics=wire.metric,
            series={
                period: {name: tuple(points) for name, points in named.items()}
                for period, named in wire.series.items()
            },
            ts_recv=ts_recv,
        )
    )
    return result


# --- encoding -----------------------------------------------------------------------------------

_encode = msgspec.json.encode


def _whole(ns: int, unit: int, what: str) -> int:
    if ns % unit:
        raise ValueError(f"Finnhub carries {what}; {ns} ns is not a whole number of them")
    return ns // unit


def encode_trades(trades: Sequence[Trade | CryptoTrade]) -> bytes:
    """A ``{"data": [...], "type": "trade"}`` frame (``t`` in ms, ``v`` the size)."""
    data = []
    for trade in trades:
        item: dict[str, Any] = {
            "p": trade.price,
            "s": trade.symbol,
            "t": _whole(trade.ts_event, NS_PER_MS, "milliseconds"),
            "v": trade.size,
        }
        if isinstance(trade, Trade) and trade.conditions:
            item["c"] = list(trade.conditions)
        data.append(item)
    return _encode({"data": data, "type": "trade"})


def _news_item(news: News) -> dict[str, Any]:
    if not news.id.isdigit():
        raise ValueError(f"Finnhub news ids are integers, got {news.id!r}")
    return {
        "category": news.category,
        "datetime": _whole(news.ts_event, NS_PER_S, "seconds"),
        "headline": news.headline,
        "id": int(news.id),
        "image": news.image,
        "related": ",".join(news.symbols),
        "source": news.source,
        "summary": news.summary,
        "url": news.url,
    }


def encode_news(news: Sequence[News]) -> bytes:
    """A websocket ``{"type": "news", "data": [...]}`` frame."""
    return _encode({"data": [_news_item(n) for n in news], "type": "news"})


def encode_company_news(news: Sequence[News]) -> bytes:
    """A ``/company-news`` response body."""
    return _encode([_news_item(n) for n in news])


def encode_basic_financials(metrics: CompanyMetrics) -> bytes:
    """A ``/stock/metric`` response body."""
    return _encode(
        {
            "series": metrics.series,
            "metric": metrics.metrics,
            "metricType": metrics.metric_type,
            "symbol": metrics.symbol,
        }
    )


# --- client -> server messages ------------------------------------------------------------------

RequestType = Literal[
    "subscribe",
    "unsubscribe",
    "subscribe-news",
    "unsubscribe-news",
    "subscribe-pr",
    "unsubscribe-pr",
]


class FinnhubRequest(Struct, frozen=True, gc=False):
    """``{"type": "subscribe", "symbol": "AAPL"}`` and its news/press-release variants."""

    type: RequestType
    symbol: str


_REQUEST: Final = msgspec.json.Decoder(FinnhubRequest)


def decode_client_message(data: bytes | str) -> FinnhubRequest | DecodeError:
    """A client's message, or the typed error the (fake) server should answer."""
    try:
        return _REQUEST.decode(data)
    except DECODE_ERRORS as exc:
        return DecodeError(source="finnhub.client", reason=str(exc), excerpt=excerpt(data))


def encode_client_message(request: FinnhubRequest) -> bytes:
    return _encode(request)
