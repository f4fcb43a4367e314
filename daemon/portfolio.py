"""The portfolio: positions, average prices, realised and unrealised PnL, and working orders.

It is fed fills (``OrderUpdate`` events of kind ``fill``/``partial_fill``), marks (the last price
of each symbol) and the orders risk approved; strategies read it through the
:class:`~tickd.strategies.base.Context` methods and risk reads exposure and the day's PnL.
Each execution is applied once (by execution id), so a stream that repeats itself after a
reconnect cannot double a position. Plain state, no I/O: the actors that own it run in one
event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from msgspec import Struct

from tickd.codecs.schema import Order, OrderUpdate
from tickd.strategies.base import OrderIntent

__all__ = [
    "FILL_EVENTS",
    "TERMINAL_EVENTS",
    "Portfolio",
    "Position",
    "WorkingOrder",
    "execution_key",
]

ZERO = Decimal(0)
FILL_EVENTS = frozenset({"fill", "partial_fill"})
# After these, an order no longer works (Alpaca's trade_updates events).
TERMINAL_EVENTS = frozenset({"fill", "canceled", "expired", "rejected", "done_for_day", "replaced"})


def execution_key(order_id: str, cumulative_qty: Decimal | None, execution_id: str | None) -> str:
    """One name for an execution, whichever way it is reported: the order and its filled
    quantity after it (the stream's order, the account activity's ``cum_qty``); Alpaca's
    activity ids and the stream's execution ids are not the same string."""
    if order_id and cumulative_qty is not None:
        return f"{order_id}@{cumulative_qty.normalize()}"
    return execution_id or order_id


class Position(Struct, kw_only=True):
    qty: Decimal = ZERO  # signed
    avg_price: Decimal = ZERO
    realized: Decimal = ZERO

    def fill(self, signed_qty: Decimal, price: Decimal) -> None:
        """Apply one execution: a fill that grows the position moves the average price; one
        that shrinks it realises PnL against it; one that crosses zero does both."""
        held = self.qty
        if held == 0 or (held > 0) == (signed_qty > 0):
            total = abs(held) + abs(signed_qty)
            self.avg_price = (self.avg_price * abs(held) + price * abs(signed_qty)) / total
            self.qty = held + signed_qty
            return
        closed = min(abs(signed_qty), abs(held))
        direction = 1 if held > 0 else -1
        self.realized += closed * (price - self.avg_price) * direction
        self.qty = held + signed_qty
        if self.qty == 0:
            self.avg_price = ZERO
        elif (self.qty > 0) != (held > 0):  # flipped: the remainder opened at this price
            self.avg_price = price


class WorkingOrder(Struct, kw_only=True):
    symbol: str
    signed_qty: Decimal  # what is left to fill, signed
    strategy: str = ""


class Portfolio:
    def __init__(self, seen_executions: int = 100_000) -> None:
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, Decimal] = {}
        self.orders: dict[str, WorkingOrder] = {}  # by client order id
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_limit = seen_executions
        self.fills = 0
        self.duplicate_fills = 0  # executions seen before (a stream replaying after reconnect)
        # Approved, and not yet seen at the venue (no order event for it, not listed by a
        # reconciliation): client order id -> when it was approved (ns).
        self.pending: dict[str, int] = {}
        self.frozen = False  # reconciling: order events wait in ``_held`` (see :meth:`freeze`)
        self._held: list[OrderUpdate] = []
        # Decided by a strategy, on their way to risk and not yet judged: (strategy, event id,
        # symbol) -> (symbol, signed qty). Counted as working, so a strategy deciding again
        # before risk has judged the first decision (several bars in one batch: a backfill, a
        # burst) does not order the same move twice.
        self.intended: dict[tuple[str, str, str], tuple[str, Decimal]] = {}

    # --- the Context a strategy reads -----------------------------------------------------------

    def position(self, symbol: str) -> Decimal:
        held = self.positions.get(symbol)
        return held.qty if held is not None else ZERO

    def working(self, symbol: str) -> Decimal:
        """Signed quantity of the orders sent and not done, and of the decisions risk has still
        to judge (a strategy must not decide the same move twice)."""
        total = self.committed(symbol)
        if self.intended:
            total += sum((q for s, q in self.intended.values() if s == symbol), ZERO)
        return total

    def intend(self, intent: OrderIntent) -> None:
        """A strategy decided ``intent``: count it as working until risk judges it."""
        key = (intent.strategy, intent.event_id, intent.symbol)
        self.intended[key] = (intent.symbol, intent.signed_qty)

    def settle(self, intent: OrderIntent) -> None:
        """Risk is judging ``intent`` (or it will never be judged): it stops counting as
        intended; approved, it counts as a working order instead (:meth:`add_working`)."""
        self.intended.pop((intent.strategy, intent.event_id, intent.symbol), None)

    # --- what risk reads ----------------------------------------------------------------------

    def committed(self, symbol: str) -> Decimal:
        """Signed quantity of the orders approved and not done (not the decisions still to be
        judged: risk judges each against what is held and approved, not against decisions it
        may yet deny)."""
        return sum((o.signed_qty for o in self.orders.values() if o.symbol == symbol), ZERO)

    def exposure(self, symbol: str) -> Decimal:
        """Signed quantity held plus approved orders: where the symbol ends if they all fill."""
        return self.position(symbol) + self.committed(symbol)

    def gross_exposure(self, extra: tuple[str, Decimal, Decimal] | None = None) -> Decimal:
        """Sum over symbols of |held + working| x mark; ``extra`` (symbol, signed qty, price)
        adds an order under consideration."""
        symbols = set(self.positions) | {o.symbol for o in self.orders.values()}
        if extra is not None:
            symbols.add(extra[0])
        total = ZERO
        for symbol in symbols:
            qty = self.exposure(symbol)
            price = self.marks.get(symbol, ZERO)
            if extra is not None and symbol == extra[0]:
                qty += extra[1]
                price = price or extra[2]
            total += abs(qty) * price
        return total

    def realized(self) -> Decimal:
        return sum((p.realized for p in self.positions.values()), ZERO)

    def unrealized(self) -> Decimal:
        total = ZERO
        for symbol, held in self.positions.items():
            mark = self.marks.get(symbol)
            if held.qty and mark is not None:
                total += held.qty * (mark - held.avg_price)
        return total

    def pnl(self) -> Decimal:
        return self.realized() + self.unrealized()

    # --- what changes it ----------------------------------------------------------------------

    def mark(self, symbol: str, price: float) -> None:
        mark = self.marks[symbol] = Decimal(repr(price))
        held = self.positions.get(symbol)
        if held is not None and held.qty and not held.avg_price:
            # reconciled before any mark (a restart): the position restarts at the first one
            held.avg_price = mark

    def add_working(
        self, client_order_id: str, intent: OrderIntent, pending_since: int | None = None
    ) -> None:
        """Count an approved order as working; with ``pending_since`` (the approval's time) it
        is pending until an order event or a reconciliation shows it at the venue: a
        reconciliation keeps a pending order the venue does not list yet."""
        self.orders[client_order_id] = WorkingOrder(
            symbol=intent.symbol, signed_qty=intent.signed_qty, strategy=intent.strategy
        )
        if pending_since is not None:
            self.pending[client_order_id] = pending_since

    def acknowledge(self, client_order_id: str) -> None:
        """The venue's fate for the order is known (seen, or refused): no longer pending."""
        self.pending.pop(client_order_id, None)

    def freeze(self) -> None:
        """Hold order events back while reconciliation replaces the state: applied in between
        snapshots they would be lost (taken before a snapshot that lacks them) or doubled."""
        self.frozen = True

    def thaw(self) -> tuple[int, bool]:
        """Apply the events held back (each execution once); returns how many there were and
        whether any moved a position."""
        self.frozen = False
        held, self._held = self._held, []
        moved = False
        for update in held:
            moved |= self.apply(update)
        return len(held), moved

    def apply(self, update: OrderUpdate) -> bool:
        """Apply an order event; returns whether it changed a position (a new fill)."""
        if self.frozen:
            self._held.append(update)
            return False
        order = update.order
        self.pending.pop(order.client_order_id, None)  # the venue has it (or refused it)
        filled = False
        if update.event in FILL_EVENTS and update.qty and update.price is not None:
            key = execution_key(order.id, order.filled_qty, update.execution_id)
            if key in self._seen:
                self.duplicate_fills += 1
            else:
                self._remember(key)
                signed = update.qty if order.side == "buy" else -update.qty
                self.positions.setdefault(order.symbol, Position()).fill(signed, update.price)
                self.fills += 1
                filled = True
                working = self.orders.get(order.client_order_id)
                if working is not None:
                    working.signed_qty -= signed
        if update.event in TERMINAL_EVENTS:
            self.orders.pop(order.client_order_id, None)
        return filled

    def seen(self, execution_id: str) -> bool:
        return execution_id in self._seen

    def remember_execution(self, execution_id: str) -> None:
        """Mark an execution as applied (reconciliation took the venue's positions, which
        already include it)."""
        self._remember(execution_id)

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        if len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)

    def replace(
        self,
        positions: dict[str, Decimal],
        open_orders: list[Order],
        stale_before_ns: int | None = None,
    ) -> list[str]:
        """Take the venue's positions and open orders as the truth (reconciliation). Average
        prices of positions that did not change are kept; a changed one restarts at the mark.
        A pending order the venue does not list is kept (it may not have arrived yet) unless it
        was approved before ``stale_before_ns``; returns the client order ids dropped so."""
        for symbol in set(self.positions) | set(positions):
            qty = positions.get(symbol, ZERO)
            held = self.positions.setdefault(symbol, Position())
            if held.qty != qty:
                held.qty = qty
                held.avg_price = self.marks.get(symbol, held.avg_price) if qty else ZERO
        listed = {o.client_order_id for o in open_orders}
        dropped = sorted(
            c
            for c, since in self.pending.items()
            if c not in listed and stale_before_ns is not None and since < stale_before_ns
        )
        for coid in listed | set(dropped):
            self.pending.pop(coid, None)
        working = {c: self.orders[c] for c in self.pending if c in self.orders}
        for order in open_orders:
            qty = (order.qty or ZERO) - (order.filled_qty or ZERO)
            previous = self.orders.get(order.client_order_id)
            working[order.client_order_id] = WorkingOrder(
                symbol=order.symbol,
                signed_qty=qty if order.side == "buy" else -qty,
                strategy=previous.strategy if previous else "",
            )
        self.orders = working
        return dropped
