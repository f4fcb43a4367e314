"""Alpaca's historical bars (REST), both ways: one page of ``GET /v2/stocks/bars`` or
``GET /v1beta3/crypto/us/bars``.

A page is ``{"bars": {"AAPL": [{"t", "o", "h", "l", "c", "v", "n", "vw"}, ...]}, "next_page_token":
str | null}``: the symbol is the key, not a field, so the items decode into private wire structs
and are converted to :class:`Bar` (stocks, whole-share volume) or :class:`CryptoBar` (fractional
volume). The websocket feeds fill their gaps from these pages (``tickd.daemon.feeds.backfill``).
"""

from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias

import msgspec
from msgspec import Struct

from .errors import DECODE_ERRORS, Decoded, DecodeError, excerpt
from .schema import Bar, CryptoBar, Int64
from .timestamps import TimestampError, format_rfc3339_ns, parse_rfc3339_ns

__all__ = ["AssetClass", "BarsPage", "decode_bars_page", "encode_bars_page"]

AssetClass: TypeAlias = Literal["stocks", "crypto"]
SOURCE: Final = "alpaca.rest.bars"


class BarsPage(Decoded):
    """One decoded page: the bars (``messages``), bad items (``errors``) and the token of the
    next page (``None`` on the last one)."""

    next_page_token: str | None = None


class _Page(Struct):
    bars: dict[str, list[msgspec.Raw]] | None = None
    next_page_token: str | None = None


class _StockBarWire(Struct, gc=False):
    t: str
    o: float
    h: float
    l: float  # noqa: E741 - wire name
    c: float
    v: Int64
    n: Int64 | None = None
    vw: float | None = None


class _CryptoBarWire(Struct, gc=False):
    t: str
    o: float
    h: float
    l: float  # noqa: E741 - wire name
    c: float
    v: float
    n: Int64 | None = None
    vw: float | None = None


_PAGE: Final = msgspec.json.Decoder(_Page)
_ITEM: Final[dict[str, Any]] = {
    "stocks": (msgspec.json.Decoder(_StockBarWire), Bar),
    "crypto": (msgspec.json.Decoder(_CryptoBarWire), CryptoBar),
}


def decode_bars_page(body: bytes | str, asset: AssetClass, ts_recv: int = 0) -> BarsPage:
    """Decode one page; a bad item costs only itself (``index`` counts items across symbols)."""
    page = BarsPage()
    try:
        wire = _PAGE.decode(body)
    except DECODE_ERRORS as exc:
        page.errors.append(
            DecodeError(source=SOURCE, reason=f"not a bars page: {exc}", excerpt=excerpt(body))
        )
        return page
    page.next_page_token = wire.next_page_token or None
    decoder, public = _ITEM[asset]
    index = 0
    for symbol, items in (wire.bars or {}).items():
        for raw in items:
            try:
                item = decoder.decode(raw)
                ts = parse_rfc3339_ns(item.t)
            except (*DECODE_ERRORS, TimestampError) as exc:
                page.errors.append(
                    DecodeError(
                        source=SOURCE,
                        reason=f"{asset} bar {symbol}: {exc}",
                        excerpt=excerpt(raw),
                        index=index,
                    )
                )
            else:
                page.messages.append(
                    public(
                        symbol=symbol,
                        ts_event=ts,
                        ts_recv=ts_recv,
                        open=item.o,
                        high=item.h,
                        low=item.l,
                        close=item.c,
                        volume=item.v,
                        trade_count=item.n,
                        vwap=item.vw,
                    )
                )
            index += 1
    return page


def encode_bars_page(bars: Sequence[Bar | CryptoBar], next_page_token: str | None = None) -> bytes:
    """A page as Alpaca sends it: bars grouped by symbol (first-seen order), ``n``/``vw`` left out
    when unknown (older bars lack them)."""
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for bar in bars:
        item: dict[str, Any] = {
            "t": format_rfc3339_ns(bar.ts_event),
            "o": bar.open,
            "h": bar.high,
            "l": bar.low,
            "c": bar.close,
            "v": bar.volume,
        }
        if bar.trade_count is not None:
            item["n"] = bar.trade_count
        if bar.vwap is not None:
            item["vw"] = bar.vwap
        by_symbol.setdefault(bar.symbol, []).append(item)
    return msgspec.json.encode({"bars": by_symbol, "next_page_token": next_page_token})
