"""The Strategy API: what a strategy declares, what it reads, and the order intents it returns.

A strategy is a small object that meets :class:`Strategy` (or :class:`SignalStrategy` for the
hot path), not a subclass of a framework class. It is pure: no I/O, no anyio, no clock of its
own; the daemon's strategy host feeds it events in order, after the indicator bank has taken
them, and passes what it decides to the risk actor. The same object runs live and in replay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from msgspec import Struct

from tickd.codecs.schema import News, OrderUpdate
from tickd.strategies.indicators import Spec

__all__ = [
    "Context",
    "IndicatorView",
    "OrderIntent",
    "OrderType",
    "Side",
    "SignalStrategy",
    "Strategy",
    "TimeInForce",
    "event_id",
]

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["day", "gtc", "ioc", "fok"]


class OrderIntent(Struct, frozen=True, kw_only=True):
    """What a strategy wants done; risk decides whether it becomes an order.

    ``event_id`` names the event the decision was made on (:func:`event_id`): with the strategy
    and the run's salt it makes the order's ``client_order_id``, so the same decision always
    maps to the same order, across retries and restarts. ``ts_event``/``ts_recv`` are that
    event's times (tracing, and the clock risk checks trading hours against).
    """

    strategy: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType = "market"
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = "day"
    reason: str = ""
    event_id: str
    ts_event: int
    ts_recv: int = 0

    def __post_init__(self) -> None:
        if not self.qty > 0:
            raise ValueError(f"intent quantity must be > 0, got {self.qty}")
        if (self.type == "limit") != (self.limit_price is not None):
            raise ValueError("a limit intent needs a limit price, and only a limit intent has one")
        if self.limit_price is not None and not self.limit_price > 0:
            raise ValueError(f"limit price must be > 0, got {self.limit_price}")

    @property
    def signed_qty(self) -> Decimal:
        return self.qty if self.side == "buy" else -self.qty


def event_id(event: Any) -> str:
    """A stable name for an event, the same live, in replay and after a restart.

    News has its provider's id; an order update its execution or event id; market data is
    named by kind, symbol and event time (one bar per symbol and minute; a trade also by its
    trade id where the source gives one).
    """
    kind = type(event).__name__
    if isinstance(event, News):
        return f"{kind}:{event.provider}:{event.id}"
    if isinstance(event, OrderUpdate):
        return f"{kind}:{event.order.id}:{event.execution_id or event.event_id or event.event}"
    trade_id = getattr(event, "trade_id", None)
    suffix = f":{trade_id}" if trade_id else ""
    return f"{kind}:{event.symbol}:{event.ts_event}{suffix}"


class IndicatorView:
    """One symbol's indicator values after an event, by the strategy's own specs.

    ``view[spec]`` (or ``view[spec, "upperband"]`` for a multi-output indicator) is the value,
    NaN during warm-up; :attr:`warmed` says whether every spec the strategy asked for has one.
    """

    __slots__ = ("_columns", "_values", "symbol")

    def __init__(
        self,
        symbol: str,
        values: Sequence[float],
        columns: Mapping[Spec | tuple[Spec, str], int],
    ) -> None:
        self.symbol = symbol
        self._values = values
        self._columns = columns

    def __getitem__(self, key: Spec | tuple[Spec, str]) -> float:
        try:
            return float(self._values[self._columns[key]])
        except KeyError:
            raise KeyError(f"{key!r} is not among the strategy's indicators") from None

    @property
    def warmed(self) -> bool:
        return not any(math.isnan(self._values[c]) for c in self._columns.values())


class Context(Protocol):
    """What a strategy may read of the daemon's state (the portfolio answers it)."""

    def position(self, symbol: str) -> Decimal:
        """Signed quantity held (filled)."""
        ...

    def working(self, symbol: str) -> Decimal:
        """Signed quantity of orders sent but not yet filled, cancelled or rejected."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """The simple path: a Python handler for each wanted event.

    ``indicators`` are the specs the bank must keep for ``symbols``; ``events`` the event kinds
    the strategy receives (schema structs: ``Bar``, ``Trade``, ``Quote``, ``News``,
    ``OrderUpdate``, ...). Kinds the bank takes (bars, or trades when the bank is fed trades)
    arrive after the bank has taken them, with ``view`` the symbol's values; other kinds arrive
    with ``view`` None.
    """

    name: str
    symbols: tuple[str, ...]
    indicators: tuple[Spec, ...]
    events: frozenset[type]

    def on_event(
        self, event: Any, view: IndicatorView | None, context: Context
    ) -> Sequence[OrderIntent]: ...


@runtime_checkable
class SignalStrategy(Strategy, Protocol):
    """The hot path: a numba function turns a symbol's indicator values into a signal (a small
    integer; 0 = none). The host evaluates it over the whole batch in one compiled call and
    calls :meth:`on_signal` only where a symbol's signal changes.

    ``signal(values, columns)`` takes one row of the bank's output and the bank's columns of
    the strategy's ``indicators`` (in their order; a multi-output spec contributes each of its
    outputs, in TA-Lib's order) and returns an int. It must be ``numba.njit``-compiled.
    """

    signal: Callable[..., int]

    def on_signal(
        self, event: Any, view: IndicatorView, signal: int, previous: int, context: Context
    ) -> Sequence[OrderIntent]: ...
