"""The unified schema: every source's messages become these structs and nothing else.

Conventions (see DESIGN.md, "One schema"):

* Times are integer nanoseconds since the epoch, UTC. ``ts_event`` comes from the source;
  ``ts_recv`` is stamped by whoever received the bytes (0 until then).
* Field names are readable; ``msgspec.field(name=...)`` records the Alpaca wire key so the Alpaca
  codec decodes straight into these types. Other sources convert explicitly.
* Sizes say what they are: equities trade whole shares (``int``), crypto trades fractions
  (``float``). Separate structs keep the two from mixing silently.
* ``gc=False`` on structs that hold only scalars, or tuples of scalars and frozen scalar structs:
  they can never be part of a reference cycle, and a daemon allocating millions of them should not
  pay for the cycle collector (a mutable struct in a tuple, like ``Order.legs``, could be).
* Trading-stream money and quantities are ``Decimal`` (they arrive as decimal strings).
* Market-data structs carry Alpaca's ``T`` tag, so a whole frame decodes in one msgspec call
  (``Trade`` and ``CryptoTrade`` share ``"t"``: they live on different streams). Bar kinds are
  subclasses (``UpdatedBar`` replaces the ``Bar`` with the same symbol and start).
* ``ts_recv`` is 0 until a decoder stamps it; the Alpaca fast path has its kernel write it into
  the frame right after ``t``, so msgspec sets it like any field (see ``codecs/fastpath.py``). It
  is declared right after ``ts_event`` for that reason: msgspec matches keys fastest when they
  come in declaration order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar, Literal, TypeAlias

from msgspec import Meta, Struct, field

__all__ = [
    "ApiError",
    "Authorization",
    "Bar",
    "BarKind",
    "BookLevel",
    "CancelError",
    "ChannelSets",
    "CompanyMetrics",
    "Correction",
    "CryptoBar",
    "CryptoDailyBar",
    "CryptoQuote",
    "CryptoTrade",
    "CryptoUpdatedBar",
    "DailyBar",
    "Imbalance",
    "LegExecution",
    "Listening",
    "Luld",
    "MarketData",
    "Message",
    "MetricPoint",
    "News",
    "Order",
    "OrderUpdate",
    "OrderbookUpdate",
    "Ping",
    "Quote",
    "StreamError",
    "Subscription",
    "Success",
    "Trade",
    "TradingStatus",
    "UpdatedBar",
]

BarKind: TypeAlias = Literal["minute", "updated", "daily"]
# Sizes, counts and ids fit int64 (what numpy and the kernels hold); bigger ones are bad input.
Int64: TypeAlias = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
# Every float is finite: a NaN or infinity on the wire (msgpack can carry one; JSON cannot) is
# bad input, not a value (NaN fails every comparison, so the bounds reject it with the
# infinities). One NaN size or volume would poison every sum, average and position it reaches.
Finite: TypeAlias = Annotated[float, Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
# A price: finite; zero and negative prices stay allowed (spreads, some corrections).
Price: TypeAlias = Finite


# --- market data (Alpaca stocks / options / Finnhub equities) -------------------------------------
# Fields are declared in the order Alpaca sends their keys (from live captures; the receive stamp
# follows the event time, where the fast path inserts it). msgspec matches each key against the
# field after the last one matched first, so a frame in declaration order decodes with one
# comparison per key: live trade frames decode 12 % faster than in the old symbol-time-price order.


class Trade(Struct, kw_only=True, gc=False, tag_field="T", tag="t"):
    """An equity or option trade. ``size`` is whole shares/contracts."""

    symbol: str = field(name="S")
    trade_id: Int64 = field(default=0, name="i")
    exchange: str = field(default="", name="x")
    price: Price = field(name="p")
    size: Int64 = field(name="s")
    conditions: tuple[str, ...] = field(default=(), name="c")
    tape: str = field(default="", name="z")
    ts_event: int = field(name="t")
    ts_recv: int = 0


class Quote(Struct, kw_only=True, gc=False, tag_field="T", tag="q"):
    """An equity or option NBBO/venue quote. Stock sizes are in round lots, as Alpaca sends them."""

    symbol: str = field(name="S")
    bid_exchange: str = field(default="", name="bx")
    bid_price: Price = field(name="bp")
    bid_size: Int64 = field(name="bs")
    ask_exchange: str = field(default="", name="ax")
    ask_price: Price = field(name="ap")
    ask_size: Int64 = field(name="as")
    conditions: tuple[str, ...] = field(default=(), name="c")
    tape: str = field(default="", name="z")
    ts_event: int = field(name="t")
    ts_recv: int = 0


class Bar(Struct, kw_only=True, gc=False, tag_field="T", tag="b"):
    """An equity OHLCV bar; ``ts_event`` is the start of the interval.

    ``kind`` (a class constant) tells it from :class:`UpdatedBar` and :class:`DailyBar`.
    ``trade_count``/``vwap`` are absent on old feeds.
    """

    symbol: str = field(name="S")
    open: Price = field(name="o")
    high: Price = field(name="h")
    low: Price = field(name="l")
    close: Price = field(name="c")
    volume: Int64 = field(name="v")
    trade_count: Int64 | None = field(default=None, name="n")
    vwap: Finite | None = field(default=None, name="vw")
    ts_event: int = field(name="t")
    ts_recv: int = 0

    kind: ClassVar[BarKind] = "minute"


class UpdatedBar(Bar, tag="u"):
    """A minute bar re-sent after late trades: replaces the bar with the same symbol and start."""

    kind: ClassVar[BarKind] = "updated"


class DailyBar(Bar, tag="d"):
    """The day's bar so far (sent after each minute once the market is open)."""

    kind: ClassVar[BarKind] = "daily"


class Correction(Struct, kw_only=True, gc=False, tag_field="T", tag="c"):
    """A correction of an earlier trade (match it by symbol, exchange and ``original_id``)."""

    symbol: str = field(name="S")
    exchange: str = field(name="x")
    original_id: Int64 = field(name="oi")
    original_price: Finite = field(name="op")
    original_size: Int64 = field(name="os")
    original_conditions: tuple[str, ...] = field(default=(), name="oc")
    corrected_id: Int64 = field(name="ci")
    corrected_price: Finite = field(name="cp")
    corrected_size: Int64 = field(name="cs")
    corrected_conditions: tuple[str, ...] = field(default=(), name="cc")
    tape: str = field(default="", name="z")
    ts_event: int = field(name="t")
    ts_recv: int = 0


class CancelError(Struct, kw_only=True, gc=False, tag_field="T", tag="x"):
    """A trade cancelled (``action == "C"``) or marked in error (``"E"``)."""

    symbol: str = field(name="S")
    trade_id: Int64 = field(name="i")
    exchange: str = field(name="x")
    price: Price = field(name="p")
    size: Int64 = field(name="s")
    action: str = field(name="a")
    tape: str = field(default="", name="z")
    ts_event: int = field(name="t")
    ts_recv: int = 0


class Luld(Struct, kw_only=True, gc=False, tag_field="T", tag="l"):
    """Limit-up/limit-down price band."""

    symbol: str = field(name="S")
    limit_up: Finite = field(name="u")
    limit_down: Finite = field(name="d")
    indicator: str = field(name="i")
    ts_event: int = field(name="t")
    ts_recv: int = 0
    tape: str = field(default="", name="z")


class TradingStatus(Struct, kw_only=True, gc=False, tag_field="T", tag="s"):
    """Halt / resume / pause. Codes are tape-specific strings, kept as sent."""

    symbol: str = field(name="S")
    status_code: str = field(name="sc")
    status_message: str = field(default="", name="sm")
    reason_code: str = field(default="", name="rc")
    reason_message: str = field(default="", name="rm")
    ts_event: int = field(name="t")
    ts_recv: int = 0
    tape: str = field(default="", name="z")


class Imbalance(Struct, kw_only=True, gc=False, tag_field="T", tag="i"):
    """Order imbalance (sent mostly around LULD halts)."""

    symbol: str = field(name="S")
    price: Price = field(name="p")
    tape: str = field(default="", name="z")
    ts_event: int = field(name="t")
    ts_recv: int = 0


# --- crypto -------------------------------------------------------------------------------------


class CryptoTrade(Struct, kw_only=True, gc=False, tag_field="T", tag="t"):
    """A crypto (or other fractional-size) trade. ``taker_side`` is ``"B"``/``"S"`` when sent."""

    symbol: str = field(name="S")
    price: Price = field(name="p")
    size: Finite = field(name="s")
    ts_event: int = field(name="t")
    ts_recv: int = 0
    trade_id: Int64 = field(default=0, name="i")
    taker_side: str = field(default="", name="tks")
    exchange: str = field(default="", name="x")


class CryptoQuote(Struct, kw_only=True, gc=False, tag_field="T", tag="q"):
    """A crypto quote: fractional sizes, no exchange, conditions or tape."""

    symbol: str = field(name="S")
    bid_price: Price = field(name="bp")
    bid_size: Finite = field(name="bs")
    ask_price: Price = field(name="ap")
    ask_size: Finite = field(name="as")
    ts_event: int = field(name="t")
    ts_recv: int = 0


class CryptoBar(Struct, kw_only=True, gc=False, tag_field="T", tag="b"):
    """A crypto OHLCV bar. Fractional volume; prices fold in quote mid-points, so ``v`` may be 0."""

    symbol: str = field(name="S")
    open: Price = field(name="o")
    high: Price = field(name="h")
    low: Price = field(name="l")
    close: Price = field(name="c")
    volume: Finite = field(name="v")
    ts_event: int = field(name="t")
    ts_recv: int = 0
    trade_count: Int64 | None = field(default=None, name="n")
    vwap: Finite | None = field(default=None, name="vw")

    kind: ClassVar[BarKind] = "minute"


class CryptoUpdatedBar(CryptoBar, tag="u"):
    """A crypto minute bar re-sent after late trades."""

    kind: ClassVar[BarKind] = "updated"


class CryptoDailyBar(CryptoBar, tag="d"):
    """The crypto day's bar so far."""

    kind: ClassVar[BarKind] = "daily"


class BookLevel(Struct, gc=False, frozen=True):
    """One price level; ``size == 0`` in a delta removes the level."""

    price: Price = field(name="p")
    size: Finite = field(name="s")


class OrderbookUpdate(Struct, kw_only=True, gc=False, tag_field="T", tag="o"):
    """Crypto order book: a full snapshot when ``reset`` is true, otherwise a delta."""

    symbol: str = field(name="S")
    ts_event: int = field(name="t")
    ts_recv: int = 0
    bids: tuple[BookLevel, ...] = field(default=(), name="b")
    asks: tuple[BookLevel, ...] = field(default=(), name="a")
    reset: bool = field(default=False, name="r")


# --- news and fundamentals ----------------------------------------------------------------------


class News(Struct, kw_only=True, gc=False):
    """A news item from any provider.

    ``id`` is the provider's id as text (NewsAPI has none: its URL is the id); ``id`` plus
    ``ts_updated`` identify a version of an article. ``source`` is the publisher.
    """

    provider: Literal["alpaca", "finnhub", "newsapi"]
    id: str
    ts_event: int
    ts_recv: int = 0
    ts_updated: int
    headline: str
    summary: str = ""
    author: str = ""
    url: str = ""
    content: str = ""
    symbols: tuple[str, ...] = ()
    source: str = ""
    category: str = ""
    image: str = ""


class MetricPoint(Struct, gc=False, frozen=True):
    """One value of a reported series (``period`` is the period's end date, ``YYYY-MM-DD``)."""

    period: str
    value: Finite = field(name="v")


class CompanyMetrics(Struct, kw_only=True):
    """Finnhub basic financials: free-form metric keys, numeric or text values."""

    symbol: str
    metric_type: str = ""
    metrics: dict[str, Finite | str | None] = {}
    series: dict[str, dict[str, tuple[MetricPoint, ...]]] = {}
    ts_recv: int = 0


# --- orders (Alpaca trade_updates) --------------------------------------------------------------


class Order(Struct, kw_only=True):
    """An Alpaca order as the trading stream (and REST) reports it. Everything but ``id`` may be
    missing or null on the wire; times are UTC nanoseconds or ``None``."""

    id: str
    client_order_id: str = ""
    symbol: str = ""
    asset_id: str = ""
    asset_class: str = ""
    side: str = ""
    order_type: str = ""
    order_class: str = ""
    time_in_force: str = ""
    status: str = ""
    extended_hours: bool = False
    qty: Decimal | None = None
    notional: Decimal | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    ratio_qty: Decimal | None = None
    created_at: int | None = None
    updated_at: int | None = None
    submitted_at: int | None = None
    filled_at: int | None = None
    expired_at: int | None = None
    canceled_at: int | None = None
    cancel_requested_at: int | None = None
    failed_at: int | None = None
    replaced_at: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    legs: tuple[Order, ...] | None = None


class LegExecution(Struct, kw_only=True, gc=False):
    """One leg's execution inside a multi-leg fill."""

    execution_id: str
    order_id: str
    symbol: str
    qty: Decimal
    price: Decimal
    ts_event: int


class OrderUpdate(Struct, kw_only=True):
    """An event of the ``trade_updates`` stream. ``event`` is kept as text (the set grows).

    ``ts_event`` is the event's ``timestamp`` (None on events that carry none); ``price``/``qty``
    belong to this execution, ``position_qty`` is the signed position after it.
    """

    event: str
    order: Order
    ts_event: int | None = None
    ts_recv: int = 0
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None
    event_id: str | None = None
    ts_at: int | None = None
    position_qtys: dict[str, Decimal] | None = None
    leg_executions: tuple[LegExecution, ...] | None = None


# --- control messages ---------------------------------------------------------------------------


class Success(Struct, tag_field="T", tag="success", gc=False, frozen=True):
    """Alpaca ``success``: ``msg`` is ``connected`` or ``authenticated``."""

    msg: str


class StreamError(Struct, tag_field="T", tag="error", gc=False, frozen=True):
    """An error the server sent: Alpaca's code (400-413, 500), or 0 where a source sends none."""

    code: int
    msg: str


class ChannelSets(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Symbols per Alpaca channel; ``None`` = the key is absent, ``()`` = present and empty."""

    trades: tuple[str, ...] | None = None
    quotes: tuple[str, ...] | None = None
    bars: tuple[str, ...] | None = None
    updated_bars: tuple[str, ...] | None = field(default=None, name="updatedBars")
    daily_bars: tuple[str, ...] | None = field(default=None, name="dailyBars")
    statuses: tuple[str, ...] | None = None
    lulds: tuple[str, ...] | None = None
    corrections: tuple[str, ...] | None = None
    cancel_errors: tuple[str, ...] | None = field(default=None, name="cancelErrors")
    imbalances: tuple[str, ...] | None = None
    orderbooks: tuple[str, ...] | None = None
    news: tuple[str, ...] | None = None


class Subscription(
    ChannelSets, tag_field="T", tag="subscription", frozen=True, kw_only=True, omit_defaults=True
):
    """Alpaca's subscription ack: the server's full current set (diff it with what you asked)."""


class Authorization(Struct, gc=False, frozen=True, kw_only=True):
    """Trading stream ``authorization`` reply (``status`` is ``authorized``/``unauthorized``)."""

    status: str
    action: str
    message: str = ""


class Listening(Struct, frozen=True, kw_only=True):
    """Trading stream ``listening`` reply: the streams now active."""

    streams: tuple[str, ...] = ()


class Ping(Struct, gc=False, kw_only=True):
    """A keep-alive from the server (Finnhub ``{"type":"ping"}``); useful only as liveness."""

    ts_recv: int = 0


class ApiError(Struct, gc=False, frozen=True, kw_only=True):
    """An error body from a REST API (NewsAPI ``{"status":"error","code":...}``)."""

    provider: str
    code: str
    message: str


MarketData: TypeAlias = (
    Trade
    | Quote
    | Bar
    | UpdatedBar
    | DailyBar
    | Correction
    | CancelError
    | Luld
    | TradingStatus
    | Imbalance
    | CryptoTrade
    | CryptoQuote
    | CryptoBar
    | CryptoUpdatedBar
    | CryptoDailyBar
    | OrderbookUpdate
)
Message: TypeAlias = (
    MarketData
    | News
    | CompanyMetrics
    | OrderUpdate
    | Success
    | StreamError
    | Subscription
    | Authorization
    | Listening
    | Ping
    | ApiError
)
