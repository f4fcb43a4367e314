"""The fake exchange's matching engine: orders, fills, positions and the account, on its own market.

Deterministic by construction: time comes from the injected ``clock_ns``, every id is a UUID
derived from a seed and a counter, and the only inputs are the market events and the calls, in
order; the same inputs give the same orders, fills and ids (a replay is repeatable).

How orders execute (the choices a simulator has to make, stated once):

* the price an order meets is the latest market event's: a trade's price (both sides), a
  quote's far side (buys meet the ask, sells the bid) or a minute bar's close (the
  day-to-date and updated bars offer nothing: their volume was offered already);
* at submission an order meets the latest price with no size limit, so a marketable order fills
  in full at once; after that, each new event offers its size (a trade's size, a quote's size on
  the far side in shares (stock quotes come in round lots of 100), a bar's volume; a bar with no
  volume offers any size) to the resting orders of its symbol in time priority: an order bigger
  than what is offered fills in parts (``partial_fill`` events, then ``fill``);
* a market order for a symbol with no price yet is accepted and waits for the first event
  (the fake market streams every symbol it lists, so the wait is short);
* limits fill at the market's price when it is at or better than the limit; stops trigger when a
  price reaches the stop, then act as market (``stop``) or limit (``stop_limit``) orders;
* ``ioc`` fills what it can at submission and cancels the rest; ``fok`` fills in full at
  submission or is canceled; ``gtc`` rests until filled or canceled; ``day`` rests until the
  next midnight UTC (the fake market never closes; :meth:`MatchingEngine.clock` says so) and
  then expires;
* cash moves by ``qty * price`` per fill; equities may be sold short, crypto may not (as on
  Alpaca); buying power is ``cash - 2 * |short market value|`` (no margin, shorts hold their
  proceeds and as much again) and is checked at submission when a price is known.

Crypto symbols are ``BTC/USD`` in orders and assets and ``BTCUSD`` in positions, as on Alpaca;
orders and position lookups accept either form.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final, Literal, TypeAlias

import msgspec
import structlog
from msgspec import Struct

from tickd.codecs.schema import (
    Bar,
    CryptoBar,
    CryptoQuote,
    CryptoTrade,
    Order,
    OrderUpdate,
    Quote,
    Trade,
)
from tickd.codecs.timestamps import NS_PER_SECOND, format_rfc3339_ns, parse_rfc3339_ns

from .chaos import Chaos
from .market import valid_symbol

__all__ = [
    "Account",
    "Activity",
    "Asset",
    "MarketClock",
    "MatchingEngine",
    "NewOrder",
    "OrderError",
    "OrderListener",
    "PositionView",
    "SubmitUnansweredError",
]

_log = structlog.get_logger("tickd.fake_exchange")

ZERO: Final = Decimal(0)
_QTY_STEP: Final = Decimal("0.000000001")  # Alpaca takes up to 9 decimal places
_DAY_NS: Final = 86_400 * NS_PER_SECOND
_ROUND_LOT: Final = 100
OPEN_STATUSES: Final = frozenset({"new", "partially_filled", "accepted", "pending_new"})
_TYPES: Final = frozenset({"market", "limit", "stop", "stop_limit"})
_TIME_IN_FORCE: Final = frozenset({"day", "gtc", "ioc", "fok"})
OrderListener: TypeAlias = Callable[[OrderUpdate], None]


class OrderError(Exception):
    """A request the exchange refuses: Alpaca's HTTP status, error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class SubmitUnansweredError(Exception):
    """Chaos: the submitter must get no answer; ``order`` is the order kept, or None when the
    submission was lost on the way (nothing kept)."""

    def __init__(self, order: Order | None) -> None:
        what = "lost" if order is None else f"order {order.id} accepted"
        super().__init__(f"{what}, answer withheld")
        self.order = order


def _invalid(message: str) -> OrderError:
    return OrderError(422, 40010001, message)


def _not_found(message: str) -> OrderError:
    return OrderError(404, 40410000, message)


class NewOrder(Struct, kw_only=True):
    """The body of ``POST /v2/orders`` (alpaca-py sends numbers as JSON numbers)."""

    symbol: str
    side: str
    time_in_force: str
    type: str | None = None
    order_type: str | None = None  # the deprecated spelling of ``type``
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    client_order_id: str | None = None
    extended_hours: bool = False
    order_class: str | None = None


# --- Alpaca's objects (decimals encode as strings, times are RFC 3339 text) ----------------------


class Account(Struct, kw_only=True):
    id: str
    account_number: str
    status: str = "ACTIVE"
    crypto_status: str = "ACTIVE"
    currency: str = "USD"
    buying_power: Decimal
    regt_buying_power: Decimal
    non_marginable_buying_power: Decimal
    options_buying_power: Decimal
    cash: Decimal
    accrued_fees: Decimal = ZERO
    pending_transfer_in: Decimal = ZERO
    pending_transfer_out: Decimal = ZERO
    portfolio_value: Decimal
    equity: Decimal
    last_equity: Decimal
    long_market_value: Decimal
    short_market_value: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    last_maintenance_margin: Decimal = ZERO
    sma: Decimal = ZERO
    multiplier: str = "1"
    shorting_enabled: bool = True
    pattern_day_trader: bool = False
    trading_blocked: bool = False
    transfers_blocked: bool = False
    account_blocked: bool = False
    trade_suspended_by_user: bool = False
    daytrade_count: int = 0
    options_approved_level: int = 0
    options_trading_level: int = 0
    created_at: str


class PositionView(Struct, kw_only=True):
    asset_id: str
    symbol: str  # BTCUSD for crypto
    exchange: str
    asset_class: str
    asset_marginable: bool
    qty: Decimal  # signed: negative when short
    qty_available: Decimal
    side: Literal["long", "short"]
    avg_entry_price: Decimal
    market_value: Decimal  # signed, as Alpaca reports a short
    cost_basis: Decimal
    unrealized_pl: Decimal
    unrealized_plpc: Decimal
    unrealized_intraday_pl: Decimal
    unrealized_intraday_plpc: Decimal
    current_price: Decimal
    lastday_price: Decimal
    change_today: Decimal


class Activity(Struct, kw_only=True):
    """A FILL account activity."""

    id: str
    account_id: str
    activity_type: str = "FILL"
    transaction_time: str
    type: Literal["fill", "partial_fill"]
    price: Decimal
    qty: Decimal
    side: str
    symbol: str
    leaves_qty: Decimal
    order_id: str
    cum_qty: Decimal
    order_status: str


class Asset(Struct, kw_only=True):
    id: str
    asset_class: str = msgspec.field(name="class")
    exchange: str
    symbol: str
    name: str
    status: str = "active"
    tradable: bool = True
    marginable: bool
    shortable: bool
    easy_to_borrow: bool
    fractionable: bool = True
    attributes: list[str] = []


class MarketClock(Struct, kw_only=True):
    timestamp: str
    is_open: bool
    next_open: str
    next_close: str


# --- state ---------------------------------------------------------------------------------------


@dataclass
class _Price:
    """The latest price a buy and a sell meet, and the first one seen (the "last day" price)."""

    buy: Decimal
    sell: Decimal
    first: Decimal


@dataclass
class _Position:
    qty: Decimal = ZERO  # signed
    avg_price: Decimal = ZERO


@dataclass
class _Working:
    """An open order's matching state."""

    order: Order
    triggered: bool  # stops: the stop price was reached
    expires_ns: int | None  # day orders


@dataclass
class _Stats:
    fills: int = 0
    listener_errors: int = 0
    submissions: int = 0
    ignored_events: dict[str, int] = field(default_factory=dict)


def _decimal(value: float | int) -> Decimal:
    """A market number as the decimal it was printed as (``187.31``, not its binary value)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _tidy(value: Decimal) -> Decimal:
    """No exponent, no trailing zeros: ``1E+2`` -> ``100``, ``2.500`` -> ``2.5``."""
    return Decimal(format(value.normalize(), "f")) if value else ZERO


def is_crypto(symbol: str) -> bool:
    return "/" in symbol


def position_symbol(symbol: str) -> str:
    """Alpaca's name for a position: ``BTC/USD`` -> ``BTCUSD``."""
    return symbol.replace("/", "")


class MatchingEngine:
    """Orders against the fake market. Call it from one event loop only (nothing here locks).

    :meth:`on_market` takes the market's events; the REST layer calls :meth:`submit`,
    :meth:`get`, :meth:`list_orders`, :meth:`cancel`, :meth:`positions`, :meth:`account`,
    :meth:`activities` and friends; every order event goes to the :meth:`subscribe`\\ d
    listeners (the trade_updates stream), in order, as it happens.
    """

    def __init__(
        self,
        *,
        clock_ns: Callable[[], int],
        chaos: Chaos,
        cash: Decimal = Decimal(100_000),
        seed: int = 0,
        assets: Iterable[str] = (),
        on_symbol: Callable[[str], None] | None = None,
        sessions: tuple[str, str] | None = None,
    ) -> None:
        """``assets`` are listed from the start (any symbol with market events joins them);
        ``on_symbol`` hears of a symbol an order names before its first price (the market can
        start streaming it). ``sessions`` (UTC ``HH:MM`` open and close, weekdays) is the
        equity session of a market that keeps one: the clock follows it, day orders expire at
        its close and an equity order does not meet the last price while it is closed (it waits
        for the open). None: always open, the "session" ending at midnight UTC."""
        self.clock_ns = clock_ns
        self._sessions = (
            None if sessions is None else (_hhmm_ns(sessions[0]), _hhmm_ns(sessions[1]))
        )
        self.chaos = chaos
        self.cash = cash
        self.initial_cash = cash
        self.realized_pl = ZERO
        self.stats = _Stats()
        self._namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"tickd-fake-exchange:{seed}")
        self._counter = 0
        self.account_id = self._uuid("account")
        self._created_ns = clock_ns()
        self._orders: dict[str, Order] = {}  # by id, in submission order
        self._by_client_id: dict[str, str] = {}
        self._working: dict[str, _Working] = {}  # open orders by id
        self._positions: dict[str, _Position] = {}  # by order symbol (BTC/USD)
        self._prices: dict[str, _Price] = {}
        self._activities: list[Activity] = []
        self._assets: dict[str, None] = dict.fromkeys(assets)  # known symbols, in order
        self._listeners: list[OrderListener] = []
        self._on_symbol = on_symbol

    # --- listeners ---------------------------------------------------------------------------

    def subscribe(self, listener: OrderListener) -> Callable[[], None]:
        """Call ``listener`` with every order event from now on; returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, update: OrderUpdate) -> None:
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:  # a listener's bug must not leave an order half-updated
                self.stats.listener_errors += 1
                _log.exception("order_listener_failed", event=update.event)

    # --- market ------------------------------------------------------------------------------

    def on_market(self, events: list[Any]) -> None:
        """Keep the latest prices and fill resting orders (other event types are ignored)."""
        now = self.clock_ns()
        self._expire(now)
        for event in events:
            offer = self._offer(event)
            if offer is None:
                name = type(event).__name__
                self.stats.ignored_events[name] = self.stats.ignored_events.get(name, 0) + 1
                continue
            symbol, buy, sell, buy_size, sell_size = offer
            self._assets.setdefault(symbol)
            known = self._prices.get(symbol)
            self._prices[symbol] = _Price(buy, sell, known.first if known else buy)
            self._match(symbol, buy, sell, buy_size, sell_size, now)

    def _offer(
        self, event: Any
    ) -> tuple[str, Decimal, Decimal, Decimal | None, Decimal | None] | None:
        """(symbol, buy price, sell price, buy size, sell size); a size of None is unlimited."""
        kind = type(event)
        if kind is Trade or kind is CryptoTrade:
            price, size = _decimal(event.price), _decimal(event.size)
            return event.symbol, price, price, size, size
        if kind is Quote or kind is CryptoQuote:
            if event.ask_price <= 0 or event.bid_price <= 0:
                return None
            lot = _ROUND_LOT if kind is Quote else 1
            ask, bid = _decimal(event.ask_price), _decimal(event.bid_price)
            return (
                event.symbol,
                ask,
                bid,
                _decimal(event.ask_size * lot),
                _decimal(event.bid_size * lot),
            )
        if kind is Bar or kind is CryptoBar:  # minute bars only: not the day-to-date bar
            close = _decimal(event.close)
            volume = _decimal(event.volume) or None
            return event.symbol, close, close, volume, volume
        return None

    def _match(
        self,
        symbol: str,
        buy: Decimal,
        sell: Decimal,
        buy_size: Decimal | None,
        sell_size: Decimal | None,
        now: int,
    ) -> None:
        sizes = {"buy": buy_size, "sell": sell_size}
        for working in list(self._working.values()):  # in time priority
            order = working.order
            if order.symbol != symbol:
                continue
            price = buy if order.side == "buy" else sell
            available = sizes[order.side]
            if (available is not None and available <= 0) or not self._marketable(working, price):
                continue
            done = self._execute(working, price, available, now)
            if available is not None:
                sizes[order.side] = available - done

    def _marketable(self, working: _Working, price: Decimal) -> bool:
        order = working.order
        buying = order.side == "buy"
        if not working.triggered:
            assert order.stop_price is not None
            if (price < order.stop_price) if buying else (price > order.stop_price):
                return False
            working.triggered = True
        if order.limit_price is None:
            return True
        return price <= order.limit_price if buying else price >= order.limit_price

    # --- orders ------------------------------------------------------------------------------

    def submit(self, request: NewOrder) -> Order:
        """Accept an order (``new`` event), then match it against the latest price.

        Raises :class:`OrderError` (422 invalid or duplicate ``client_order_id``, 403 buying
        power or crypto balance) or a chaos fault, at most one per submission, the first that
        applies in this order: nothing kept (``submit_fail_every`` 500, ``submit_lost_every``
        :class:`SubmitUnansweredError` without an order, ``submit_throttle_every`` 429), or
        kept and matched (``submit_fail_kept_every`` 500, ``submit_timeout_every``
        :class:`SubmitUnansweredError`)."""
        now = self.clock_ns()
        self._expire(now)
        self.stats.submissions += 1
        chaos, settings, n = self.chaos, self.chaos.settings, self.stats.submissions
        if chaos.every(settings.submit_fail_every, n):
            chaos.count("submit_fail")
            raise OrderError(500, 50010000, "internal server error")
        if chaos.every(settings.submit_lost_every, n):
            chaos.count("submit_lost")
            raise SubmitUnansweredError(None)
        if chaos.every(settings.submit_throttle_every, n):
            chaos.count("submit_throttle")
            raise OrderError(429, 42910000, "rate limit exceeded")
        order = self._validate(request, now)
        price = self._prices.get(order.symbol)
        self._check_funds(order, price)
        working = _Working(
            order=order,
            triggered=order.stop_price is None,
            expires_ns=self._session(now)[2] if order.time_in_force == "day" else None,
        )
        self._orders[order.id] = order
        self._by_client_id[order.client_order_id] = order.id
        self._working[order.id] = working
        if order.symbol not in self._assets:
            self._assets[order.symbol] = None
            if self._on_symbol is not None:
                self._on_symbol(order.symbol)
        self._emit(self._update("new", order, now))
        closed = not is_crypto(order.symbol) and not self._session(now)[0]
        fillable = (
            price is not None
            and not closed
            and self._marketable(working, price.buy if order.side == "buy" else price.sell)
        )
        if fillable and price is not None:
            self._execute(working, price.buy if order.side == "buy" else price.sell, None, now)
        if order.time_in_force in ("ioc", "fok") and order.id in self._working:
            self._close(order.id, "canceled", now)
        if chaos.every(settings.submit_fail_kept_every, n):
            chaos.count("submit_fail_kept")
            raise OrderError(500, 50010000, "internal server error")
        if chaos.every(settings.submit_timeout_every, n):
            chaos.count("submit_timeout")
            raise SubmitUnansweredError(order)
        return order

    def _validate(self, request: NewOrder, now: int) -> Order:
        symbol = self._symbol(request.symbol)
        kind = request.type or request.order_type or ""
        if request.side not in ("buy", "sell"):
            raise _invalid(f"invalid side {request.side!r}")
        if kind not in _TYPES:
            raise _invalid(f"invalid order type {kind!r} (this exchange: {sorted(_TYPES)})")
        if request.time_in_force not in _TIME_IN_FORCE:
            raise _invalid(f"invalid time_in_force {request.time_in_force!r}")
        if request.order_class not in (None, "", "simple"):
            raise _invalid(f"order_class {request.order_class!r} is not supported here")
        if (request.qty is None) == (request.notional is None):
            raise _invalid("qty or notional is required, not both")
        if request.notional is not None and kind != "market":
            raise _invalid("notional is only allowed for market orders")
        for name in ("qty", "notional", "limit_price", "stop_price"):
            value = getattr(request, name)
            if value is not None and not (value.is_finite() and value > 0):
                raise _invalid(f"{name} must be a number > 0")
        if kind in ("limit", "stop_limit") and request.limit_price is None:
            raise _invalid(f"limit_price is required for {kind} orders")
        if kind in ("stop", "stop_limit") and request.stop_price is None:
            raise _invalid(f"stop_price is required for {kind} orders")
        if is_crypto(symbol) and request.time_in_force not in ("gtc", "ioc"):
            raise _invalid("crypto orders take time_in_force gtc or ioc")
        cid = request.client_order_id or self._uuid("client-order")
        if len(cid) > 128:
            raise _invalid("client_order_id must be no more than 128 characters")
        if cid in self._by_client_id:
            raise _invalid("client_order_id must be unique")
        return Order(
            id=self._uuid("order"),
            client_order_id=cid,
            symbol=symbol,
            asset_id=self._asset_id(symbol),
            asset_class="crypto" if is_crypto(symbol) else "us_equity",
            side=request.side,
            order_type=kind,
            order_class="",
            time_in_force=request.time_in_force,
            status="new",
            extended_hours=request.extended_hours,
            qty=None if request.qty is None else _tidy(request.qty),
            notional=None if request.notional is None else _tidy(request.notional),
            filled_qty=ZERO,
            limit_price=None if request.limit_price is None else _tidy(request.limit_price),
            stop_price=None if request.stop_price is None else _tidy(request.stop_price),
            created_at=now,
            updated_at=now,
            submitted_at=now,
        )

    def _symbol(self, text: str) -> str:
        """The order symbol: a listed crypto pair as ``BTC/USD`` whichever form was sent. Valid
        means valid for the market too (an order starts the symbol there)."""
        if not valid_symbol(text):
            raise _invalid(f"invalid symbol {text!r}")
        if is_crypto(text):
            return text
        known = {position_symbol(s): s for s in self._assets if is_crypto(s)}
        return known.get(text, text)

    def _check_funds(self, order: Order, price: _Price | None) -> None:
        """Buys, and equity sells past the long position (a short), need buying power (when a
        price is known); a crypto sell needs the coins, less what open sells already hold."""
        held = self._positions.get(order.symbol, _Position()).qty
        selling = sum(
            (w.order.qty or ZERO) - (w.order.filled_qty or ZERO)
            for w in self._working.values()
            if w.order.symbol == order.symbol and w.order.side == "sell"
        )
        if order.side == "buy":
            if price is None:
                return
            at = order.limit_price or price.buy
            cost = order.notional if order.qty is None else order.qty * at
            assert cost is not None
            if cost > self._buying_power():
                raise OrderError(403, 40310000, "insufficient buying power")
        elif is_crypto(order.symbol):
            available = held - selling
            quantity = order.qty
            if quantity is None and price is not None:
                quantity = (order.notional or ZERO) / price.sell
            if quantity is None or quantity > available:
                raise OrderError(
                    403,
                    40310000,
                    f"insufficient balance for {order.symbol.split('/')[0]} "
                    f"(requested: {order.qty or order.notional}, "
                    f"available: {_tidy(max(available, ZERO))})",
                )
        elif price is not None:
            at = order.limit_price or price.sell
            quantity = order.qty if order.qty is not None else (order.notional or ZERO) / at
            short = quantity - max(held - selling, ZERO)
            if short > 0 and short * at > self._buying_power():
                raise OrderError(403, 40310000, "insufficient buying power")

    def _execute(
        self, working: _Working, price: Decimal, available: Decimal | None, now: int
    ) -> Decimal:
        """Fill what ``available`` allows (all when None); returns the quantity filled."""
        order = working.order
        if order.qty is None:  # a notional order learns its quantity at its first price
            assert order.notional is not None
            order.qty = _tidy((order.notional / price).quantize(_QTY_STEP, ROUND_DOWN))
            if not order.qty:
                self._close(order.id, "canceled", now)
                return ZERO
        filled = order.filled_qty or ZERO
        qty = order.qty - filled
        if available is not None and available < qty:
            qty = available.quantize(_QTY_STEP, ROUND_DOWN)  # at most 9 decimals, as Alpaca
            if not qty:
                return ZERO
        if working.order.time_in_force == "fok" and filled + qty < order.qty:
            return ZERO
        cumulative = filled + qty
        average = ((order.filled_avg_price or ZERO) * filled + price * qty) / cumulative
        done = cumulative == order.qty
        order.filled_qty = _tidy(cumulative)
        order.filled_avg_price = _tidy(average.quantize(_QTY_STEP))
        order.status = "filled" if done else "partially_filled"
        order.updated_at = now
        if done:
            order.filled_at = now
            del self._working[order.id]
        position_qty = self._book(order.symbol, qty if order.side == "buy" else -qty, price)
        self.stats.fills += 1
        self._activities.append(
            Activity(
                id=f"{_activity_stamp(now)}::{self._uuid('activity')}",
                account_id=self.account_id,
                transaction_time=format_rfc3339_ns(now),
                type="fill" if done else "partial_fill",
                price=price,
                qty=_tidy(qty),
                side=order.side,
                symbol=order.symbol,
                leaves_qty=_tidy(order.qty - cumulative),
                order_id=order.id,
                cum_qty=order.filled_qty,
                order_status=order.status,
            )
        )
        update = self._update("fill" if done else "partial_fill", order, now)
        update.execution_id = self._uuid("execution")
        update.price, update.qty, update.position_qty = price, _tidy(qty), position_qty
        self._emit(update)
        return qty

    def _book(self, symbol: str, signed_qty: Decimal, price: Decimal) -> Decimal:
        """Apply a fill to cash and the position; returns the position after it."""
        self.cash -= signed_qty * price
        position = self._positions.setdefault(symbol, _Position())
        before = position.qty
        after = before + signed_qty
        if before == 0 or (before > 0) == (signed_qty > 0):  # opening or adding
            position.avg_price = (abs(before) * position.avg_price + abs(signed_qty) * price) / abs(
                after
            )
        else:  # reducing, closing or flipping
            closed = min(abs(signed_qty), abs(before))
            direction = 1 if before > 0 else -1
            self.realized_pl += (price - position.avg_price) * closed * direction
            if after == 0:
                position.avg_price = ZERO
            elif (after > 0) != (before > 0):
                position.avg_price = price
        position.qty = after
        if after == 0:
            del self._positions[symbol]
        return _tidy(after)

    def _close(self, order_id: str, status: Literal["canceled", "expired"], now: int) -> Order:
        del self._working[order_id]
        order = self._orders[order_id]
        order.status = status
        order.updated_at = now
        if status == "canceled":
            order.canceled_at = now
        else:
            order.expired_at = now
        self._emit(self._update(status, order, now))
        return order

    def _expire(self, now: int) -> None:
        for working in list(self._working.values()):
            if working.expires_ns is not None and now >= working.expires_ns:
                self._close(working.order.id, "expired", now)

    def get(self, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None:
            raise _not_found(f"order not found for {order_id}")
        return order

    def orders(self) -> list[Order]:
        """Every order ever accepted, in submission order: the venue's whole book, for a test
        that counts what a client placed (``list_orders`` pages it as Alpaca does)."""
        return list(self._orders.values())

    def get_by_client_id(self, client_order_id: str) -> Order:
        order_id = self._by_client_id.get(client_order_id)
        if order_id is None:
            raise _not_found(f"order not found for client_order_id {client_order_id}")
        return self._orders[order_id]

    def list_orders(
        self,
        *,
        status: str = "open",
        limit: int = 50,
        after_ns: int | None = None,
        until_ns: int | None = None,
        direction: str = "desc",
        symbols: Iterable[str] = (),
        side: str | None = None,
    ) -> list[Order]:
        """Alpaca's ``GET /v2/orders``: ``after``/``until`` are exclusive bounds on the
        submission time; newest first unless ``direction`` is ``asc``."""
        if status not in ("open", "closed", "all") or direction not in ("asc", "desc"):
            raise _invalid(f"invalid status {status!r} or direction {direction!r}")
        if not 1 <= limit <= 500:
            raise _invalid("limit must be between 1 and 500")
        wanted = {self._symbol(s) for s in symbols}
        found = [
            order
            for order in self._orders.values()
            if (status == "all" or (order.status in OPEN_STATUSES) == (status == "open"))
            and (after_ns is None or (order.submitted_at or 0) > after_ns)
            and (until_ns is None or (order.submitted_at or 0) < until_ns)
            and (not wanted or order.symbol in wanted)
            and (side is None or order.side == side)
        ]
        if direction == "desc":
            found.reverse()
        return found[:limit]

    def cancel(self, order_id: str) -> Order:
        """Cancel an open order (at once: the ``canceled`` event goes out before this returns)."""
        order = self.get(order_id)
        if order.id not in self._working:
            raise OrderError(422, 42210000, f'order is already in "{order.status}" state')
        return self._close(order.id, "canceled", self.clock_ns())

    def cancel_all(self) -> list[Order]:
        now = self.clock_ns()
        return [self._close(order_id, "canceled", now) for order_id in list(self._working)]

    # --- positions and the account -----------------------------------------------------------

    def positions(self) -> list[PositionView]:
        return [self._position_view(symbol) for symbol in self._positions]

    def position(self, symbol: str) -> PositionView:
        """A position by ``BTCUSD``, ``BTC/USD`` or an equity symbol (404 when flat)."""
        for held in self._positions:
            if symbol in (held, position_symbol(held)):
                return self._position_view(held)
        raise _not_found(f"position does not exist: {symbol}")

    def close_position(
        self, symbol: str, *, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        """Liquidate (part of) a position with a market order, as ``DELETE /v2/positions``."""
        view = self.position(symbol)
        held = abs(view.qty)
        if qty is not None and percentage is not None:
            raise _invalid("only one of qty or percentage may be given")
        if any(v is not None and not v.is_finite() for v in (qty, percentage)):
            raise _invalid("qty and percentage must be numbers")
        amount = held if qty is None else qty
        if percentage is not None:
            amount = (held * percentage / 100).quantize(_QTY_STEP, ROUND_DOWN)
        if not ZERO < amount <= held:
            raise OrderError(
                403, 40310000, f"insufficient qty available for order (requested: {amount})"
            )
        order_symbol = next(s for s in self._positions if position_symbol(s) == view.symbol)
        return self.submit(
            NewOrder(
                symbol=order_symbol,
                side="sell" if view.side == "long" else "buy",
                type="market",
                time_in_force="gtc" if is_crypto(order_symbol) else "day",
                qty=amount,
            )
        )

    def _mark(self, symbol: str) -> Decimal:
        price = self._prices.get(symbol)
        return self._positions[symbol].avg_price if price is None else (price.buy + price.sell) / 2

    def _position_view(self, symbol: str) -> PositionView:
        position = self._positions[symbol]
        current = _tidy(self._mark(symbol))
        price = self._prices.get(symbol)
        first = price.first if price is not None else current
        cost = position.qty * position.avg_price
        value = position.qty * current
        pl = value - cost
        plpc = (pl / abs(cost)).quantize(_QTY_STEP) if cost else ZERO
        change = ((current - first) / first).quantize(_QTY_STEP) if first else ZERO
        crypto = is_crypto(symbol)
        return PositionView(
            asset_id=self._asset_id(symbol),
            symbol=position_symbol(symbol),
            exchange="CRYPTO" if crypto else "NASDAQ",
            asset_class="crypto" if crypto else "us_equity",
            asset_marginable=not crypto,
            qty=_tidy(position.qty),
            qty_available=_tidy(position.qty),
            side="long" if position.qty > 0 else "short",
            avg_entry_price=_tidy(position.avg_price.quantize(_QTY_STEP)),
            market_value=_tidy(value),
            cost_basis=_tidy(cost.quantize(_QTY_STEP)),
            unrealized_pl=_tidy(pl.quantize(_QTY_STEP)),
            unrealized_plpc=_tidy(plpc),
            unrealized_intraday_pl=_tidy(pl.quantize(_QTY_STEP)),
            unrealized_intraday_plpc=_tidy(plpc),
            current_price=current,
            lastday_price=first,
            change_today=_tidy(change),
        )

    def _buying_power(self) -> Decimal:
        short = sum((-p.qty * self._mark(s) for s, p in self._positions.items() if p.qty < 0), ZERO)
        return max(ZERO, self.cash - 2 * short)

    def account(self) -> Account:
        long = sum((p.qty * self._mark(s) for s, p in self._positions.items() if p.qty > 0), ZERO)
        short = sum((p.qty * self._mark(s) for s, p in self._positions.items() if p.qty < 0), ZERO)
        equity = _tidy(self.cash + long + short)
        power = _tidy(self._buying_power())
        margin = _tidy(long - short)
        return Account(
            id=self.account_id,
            account_number=f"PA{self._namespace.int % 10**10:010d}",
            buying_power=power,
            regt_buying_power=power,
            non_marginable_buying_power=power,
            options_buying_power=power,
            cash=_tidy(self.cash),
            portfolio_value=equity,
            equity=equity,
            last_equity=_tidy(self.initial_cash),
            long_market_value=_tidy(long),
            short_market_value=_tidy(short),
            initial_margin=margin,
            maintenance_margin=margin,
            created_at=format_rfc3339_ns(self._created_ns),
        )

    def activities(
        self,
        *,
        types: Iterable[str] = ("FILL",),
        after_ns: int | None = None,
        until_ns: int | None = None,
        direction: str = "desc",
        page_size: int = 100,
        page_token: str | None = None,
    ) -> list[Activity]:
        """FILL activities (the only kind this exchange makes); ``after``/``until`` exclusive,
        newest first unless ``asc``; a page starts after the activity ``page_token`` names."""
        if direction not in ("asc", "desc") or not 1 <= page_size <= 100:
            raise _invalid("direction must be asc or desc, page_size 1 to 100")
        if "FILL" not in set(types):
            return []
        found = [
            a
            for a in self._activities
            if (after_ns is None or _activity_ns(a) > after_ns)
            and (until_ns is None or _activity_ns(a) < until_ns)
        ]
        if direction == "desc":
            found.reverse()
        if page_token is not None:
            ids = [a.id for a in found]
            found = found[ids.index(page_token) + 1 :] if page_token in ids else []
        return found[:page_size]

    def assets(self) -> list[Asset]:
        return [self._asset(symbol) for symbol in self._assets]

    def asset(self, symbol: str) -> Asset:
        for known in self._assets:
            if symbol in (known, position_symbol(known)):
                return self._asset(known)
        raise _not_found(f"asset not found for {symbol}")

    def clock(self) -> MarketClock:
        """The equity session (see the constructor): always open by default, the "session"
        ending at the next midnight UTC, when day orders expire."""
        now = self.clock_ns()
        is_open, next_open, next_close = self._session(now)
        return MarketClock(
            timestamp=format_rfc3339_ns(now),
            is_open=is_open,
            next_open=format_rfc3339_ns(next_open),
            next_close=format_rfc3339_ns(next_close),
        )

    def _session(self, now: int) -> tuple[bool, int, int]:
        """(open now, the next open, the next close) at ``now``."""
        if self._sessions is None:
            midnight = (now // _DAY_NS + 1) * _DAY_NS
            return True, midnight, midnight
        open_ns, close_ns = self._sessions
        today = now // _DAY_NS
        sessions = [
            (day * _DAY_NS + open_ns, day * _DAY_NS + close_ns)
            for day in range(today, today + 9)
            if (day + 3) % 7 < 5  # 1970-01-01 was a Thursday: Monday to Friday
        ]
        current = next(i for i, (_, end) in enumerate(sessions) if now < end)
        start, end = sessions[current]
        if now >= start:
            return True, sessions[current + 1][0], end
        return False, start, end

    # --- helpers -----------------------------------------------------------------------------

    def _asset(self, symbol: str) -> Asset:
        crypto = is_crypto(symbol)
        return Asset(
            id=self._asset_id(symbol),
            asset_class="crypto" if crypto else "us_equity",
            exchange="CRYPTO" if crypto else "NASDAQ",
            symbol=symbol,
            name=f"{symbol} (fake exchange)",
            marginable=not crypto,
            shortable=not crypto,
            easy_to_borrow=not crypto,
        )

    def _uuid(self, kind: str) -> str:
        self._counter += 1
        return str(uuid.uuid5(self._namespace, f"{kind}:{self._counter}"))

    def _asset_id(self, symbol: str) -> str:
        return str(uuid.uuid5(self._namespace, f"asset:{symbol}"))

    def _update(self, event: str, order: Order, now: int) -> OrderUpdate:
        """An event with a snapshot of the order (the order changes later; the event must not)."""
        return OrderUpdate(event=event, order=msgspec.structs.replace(order), ts_event=now)


def _hhmm_ns(text: str) -> int:
    """``"13:30"`` -> nanoseconds after midnight."""
    hours, _, minutes = text.partition(":")
    return (int(hours) * 3600 + int(minutes) * 60) * NS_PER_SECOND


def _activity_stamp(ns: int) -> str:
    """Alpaca's activity id prefix: ``YYYYMMDDHHMMSSmmm``."""
    text = format_rfc3339_ns(ns)  # 2024-01-02T03:04:05.123456789Z
    digits = "".join(ch for ch in text[:19] if ch.isdigit())
    millis = f"{ns // 1_000_000 % 1000:03d}"
    return digits + millis


def _activity_ns(activity: Activity) -> int:
    return parse_rfc3339_ns(activity.transaction_time)
