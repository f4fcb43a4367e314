"""The simulated broker, for replay and the demo: fills from the market data the daemon sees.

A market order fills at the first trade, quote or bar of its symbol that is later than the
event its decision was made on (a trade's price; the ask to buy or the bid to sell; a bar's
open), made worse by ``slippage_bps``. A limit order fills when the price crosses its limit: a
trade at or through it, an ask at or below a buy limit (a bid at or above a sell limit), a bar
whose low (high) reaches it, at the better of the limit and the bar's open. ``ioc``/``fok``
limit orders that do not fill on the first eligible event are cancelled. Fills are whole.
Fees (per share and as a rate of notional) are added up in :attr:`SimStats.fees`.

Which event fills an order depends only on event times, never on when the order reached the
simulator: events seen before the order arrived are kept (a short history per symbol) and
matched first. So a replay fills the same way at any speed. It emits the same ``OrderUpdate``
events as Alpaca's ``trade_updates`` stream (``new``, ``fill``, ``canceled``), and refuses a
reused ``client_order_id`` the way the venue does (by returning the order it already has).
It remembers every open order and the latest ``FINISHED`` finished ones (a dry run of weeks must
not keep them all): an id reused after that many orders have finished is a new order.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from msgspec import Struct, structs

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

from ..clock import Clock
from .base import Fill, Gate, OrderRequest, OrderWithdrawnError

__all__ = ["FINISHED", "SimBroker", "SimSettings", "SimStats"]

FINISHED = 10_000  # finished orders remembered (and fills kept), the latest ones

_NAMESPACE = uuid.UUID("6f1c1d2e-7b0a-4b53-9d7e-2a4c9e0f5a11")
_CENT = Decimal("0.0001")
_TRADES = (Trade, CryptoTrade)
_QUOTES = (Quote, CryptoQuote)
_BARS = (Bar, CryptoBar)
_PRICED = frozenset((*_TRADES, *_QUOTES, *_BARS))


class SimSettings(Struct, frozen=True, kw_only=True):
    fee_per_share: float = 0.0
    fee_rate: float = 0.0
    slippage_bps: float = 1.0
    history: int = 64  # market events kept per symbol for orders that arrive after them


class SimStats(Struct, kw_only=True):
    submitted: int = 0
    duplicates: int = 0
    fills: int = 0
    canceled: int = 0
    fees: Decimal = Decimal(0)


class _Working(Struct, kw_only=True):
    order: Order
    after_ns: int  # fill only on events later than the decision's event


class SimBroker:
    def __init__(
        self,
        settings: SimSettings,
        publish: Callable[[list[Any]], Awaitable[None]],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.stats = SimStats()
        self.orders: dict[str, Order] = {}  # by client order id: open, and the latest finished
        self._finished: deque[str] = deque()  # client order ids of finished orders, oldest first
        self._publish = publish
        self._clock = clock
        self._open: dict[str, list[_Working]] = {}
        self._recent: dict[str, deque[Any]] = {}
        self._positions: dict[str, Decimal] = {}
        # The latest fills, for a reconciliation's look back (a long dry run must not keep all).
        self._fills: deque[Fill] = deque(maxlen=FINISHED)
        self._slip = Decimal(repr(settings.slippage_bps)) / 10_000
        self._per_share = Decimal(repr(settings.fee_per_share))
        self._rate = Decimal(repr(settings.fee_rate))

    # --- the Broker protocol -------------------------------------------------------------------

    async def submit(self, request: OrderRequest, go: Gate | None = None) -> Order:
        coid, intent = request.client_order_id, request.intent
        known = self.orders.get(coid)
        if known is not None:
            self.stats.duplicates += 1
            return known
        withdrawn = go() if go is not None else None
        if withdrawn is not None:
            raise OrderWithdrawnError(withdrawn, client_order_id=coid)
        now = self._clock.now_ns()
        order = Order(
            id=str(uuid.uuid5(_NAMESPACE, coid)),
            client_order_id=coid,
            symbol=intent.symbol,
            side=intent.side,
            order_type=intent.type,
            time_in_force=intent.time_in_force,
            status="new",
            qty=intent.qty,
            filled_qty=Decimal(0),
            limit_price=intent.limit_price,
            created_at=now,
            submitted_at=now,
            updated_at=now,
        )
        self.orders[coid] = order
        self.stats.submitted += 1
        working = _Working(order=order, after_ns=intent.ts_event)
        updates = [OrderUpdate(event="new", order=order, ts_event=now, ts_recv=now)]
        for event in self._recent.get(intent.symbol, ()):
            if event.ts_event > working.after_ns and self._try(working, event, updates):
                break
        else:  # nothing seen so far filled (or cancelled) it: it works until an event does
            self._open.setdefault(intent.symbol, []).append(working)
        await self._publish(updates)
        return order

    async def cancel(self, order_id: str) -> None:
        for symbol, working in self._open.items():
            for item in working:
                if item.order.id == order_id:
                    updates: list[Any] = []
                    self._cancel(item, self._clock.now_ns(), updates)
                    self._open[symbol] = [w for w in working if w is not item]
                    await self._publish(updates)
                    return

    async def open_orders(self) -> list[Order]:
        return [w.order for working in self._open.values() for w in working]

    async def positions(self) -> dict[str, Decimal]:
        return {s: q for s, q in self._positions.items() if q}

    async def fills(self, since_ns: int) -> list[Fill]:
        return [f for f in self._fills if f.ts_event >= since_ns]

    async def now_ns(self) -> int:
        return self._clock.now_ns()

    # --- the market ----------------------------------------------------------------------------

    async def on_market(self, events: list[Any]) -> None:
        """Match open orders against ``events`` (in order) and keep them for later orders."""
        updates: list[Any] = []
        history = self.settings.history
        for event in events:
            symbol = event.symbol
            recent = self._recent.get(symbol)
            if recent is None:
                recent = self._recent[symbol] = deque(maxlen=history)
            recent.append(event)
            working = self._open.get(symbol)
            if working:
                left = [
                    w
                    for w in working
                    if not (event.ts_event > w.after_ns and self._try(w, event, updates))
                ]
                self._open[symbol] = left
        if updates:
            await self._publish(updates)

    def _try(self, working: _Working, event: Any, updates: list[Any]) -> bool:
        """Fill (or, for ioc/fok, cancel) ``working`` on ``event``; True if it is done."""
        order = working.order
        if type(event) not in _PRICED:  # says nothing of the price (a status, a daily bar)
            return False
        price = self._price(order, event)
        if price is None:
            if order.time_in_force in ("ioc", "fok"):
                self._cancel(working, event.ts_event, updates)
                return True
            return False
        self._fill(working, price.quantize(_CENT, ROUND_HALF_EVEN), event, updates)
        return True

    def _price(self, order: Order, event: Any) -> Decimal | None:
        buy = order.side == "buy"
        kind = type(event)
        if kind in _TRADES:
            low = high = open_ = event.price
        elif kind in _QUOTES:
            low = high = open_ = event.ask_price if buy else event.bid_price
            if not open_ > 0:  # a one-sided quote
                return None
        elif kind in _BARS:
            low, high, open_ = event.low, event.high, event.open
        else:
            return None
        if order.order_type == "market":
            base = Decimal(repr(open_))
            return base * (1 + self._slip) if buy else base * (1 - self._slip)
        limit = order.limit_price
        assert limit is not None  # OrderIntent guarantees it for limit orders
        if buy and Decimal(repr(low)) <= limit:
            return min(limit, Decimal(repr(open_)))
        if not buy and Decimal(repr(high)) >= limit:
            return max(limit, Decimal(repr(open_)))
        return None

    def _fill(self, working: _Working, price: Decimal, event: Any, updates: list[Any]) -> None:
        order = working.order
        qty = order.qty or Decimal(0)
        signed = qty if order.side == "buy" else -qty
        position = self._positions.get(order.symbol, Decimal(0)) + signed
        self._positions[order.symbol] = position
        ts = event.ts_event
        filled = structs.replace(
            order,
            status="filled",
            filled_qty=qty,
            filled_avg_price=price,
            filled_at=ts,
            updated_at=ts,
        )
        self._finish(filled)
        execution = str(uuid.uuid5(_NAMESPACE, f"{order.id}:fill"))
        self.stats.fills += 1
        self.stats.fees += qty * self._per_share + qty * price * self._rate
        self._fills.append(
            Fill(
                execution_id=execution,
                order_id=order.id,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                qty=qty,
                price=price,
                ts_event=ts,
                cum_qty=filled.filled_qty,
            )
        )
        updates.append(
            OrderUpdate(
                event="fill",
                order=filled,
                ts_event=ts,
                ts_recv=event.ts_recv or ts,
                execution_id=execution,
                price=price,
                qty=qty,
                position_qty=position,
            )
        )

    def _cancel(self, working: _Working, ts: int, updates: list[Any]) -> None:
        order = structs.replace(working.order, status="canceled", canceled_at=ts, updated_at=ts)
        self._finish(order)
        self.stats.canceled += 1
        updates.append(OrderUpdate(event="canceled", order=order, ts_event=ts, ts_recv=ts))

    def _finish(self, order: Order) -> None:
        """Record ``order``'s final state; forget the oldest finished order past ``FINISHED``."""
        self.orders[order.client_order_id] = order
        self._finished.append(order.client_order_id)
        if len(self._finished) > FINISHED:
            del self.orders[self._finished.popleft()]
