"""RSI mean reversion with Bollinger Band confirmation: buy the oversold dip, sell the rebound.

Configuration (``kind = "rsi_reversion"``)::

    name             the strategy's name (in every intent and client order id)
    symbols          the symbols it trades
    rsi_period = 14  RSI period (bars)
    oversold = 30    enter long below this RSI ...
    exit_level = 50  ... and exit the long above it (a short exits below 100 - exit_level)
    overbought = 70  enter short above this RSI (only with allow_short)
    bb_period = 20   Bollinger Bands period (bars)
    bb_dev = 2.0     band width in (population) standard deviations, both bands
    qty = 1          shares (or coins) per symbol: the size of the position it aims at
    allow_short = false
    order_type = "market"   or "limit": a limit order at the bar's close ...
    limit_offset = 0.0      ... or, above 0, a passive one that far from it (a fraction of
                            the close, below 1): a buy below the close, a sell above it,
                            which rests at the venue until the market comes to it
    time_in_force = "day"

The rule, per symbol, on each bar once RSI and the bands have values (no decision during
warm-up: the first ``max(rsi_period, bb_period - 1)`` bars), with ``exposure = position +
working orders``:

1. **Enter long** when ``rsi < oversold`` and ``close < lower band``: target ``+qty``.
2. Else, **enter short** (only with ``allow_short``) when ``rsi > overbought`` and ``close >
   upper band``: target ``-qty``.
3. Else, when long (``exposure > 0``), **exit** when ``rsi > exit_level`` or ``close > middle
   band``: target 0.
4. Else, when short (``exposure < 0``), **exit** when ``rsi < 100 - exit_level`` or ``close <
   middle band``: target 0.
5. Otherwise keep what is held.

Each decision sends one order for ``target - exposure`` (none when that is 0), so an entry
repeated while its order is still working is not doubled, and an entry against an opposite
position reverses it in one order.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from tickd.codecs.schema import Bar, CryptoBar
from tickd.strategies import targets
from tickd.strategies.base import Context, IndicatorView, OrderIntent, OrderType, TimeInForce
from tickd.strategies.indicators import Spec

__all__ = ["RsiReversion"]


class RsiReversion:
    """RSI mean reversion confirmed by Bollinger Bands; see the module's documentation."""

    def __init__(
        self,
        *,
        name: str,
        symbols: Sequence[str],
        rsi_period: int = 14,
        oversold: float = 30.0,
        exit_level: float = 50.0,
        overbought: float = 70.0,
        bb_period: int = 20,
        bb_dev: float = 2.0,
        qty: Decimal | int | float | str = Decimal(1),
        allow_short: bool = False,
        order_type: OrderType = "market",
        limit_offset: float = 0.0,
        time_in_force: TimeInForce = "day",
    ) -> None:
        self.name = targets.strategy_name(name)
        self.symbols = targets.symbol_tuple(symbols)
        self.rsi_period = targets.integer(rsi_period, "rsi_period", minimum=2)
        self.oversold = targets.number(oversold, "oversold", low=0.0, high=100.0)
        self.exit_level = targets.number(exit_level, "exit_level", low=0.0, high=100.0)
        self.overbought = targets.number(overbought, "overbought", low=0.0, high=100.0)
        if not self.oversold < self.exit_level:
            raise ValueError(f"oversold ({oversold}) must be below exit_level ({exit_level})")
        if not self.oversold < self.overbought:
            raise ValueError(f"oversold ({oversold}) must be below overbought ({overbought})")
        if not 100.0 - self.exit_level < self.overbought:
            raise ValueError(
                f"a short exits below 100 - exit_level ({100.0 - self.exit_level:g}): "
                f"that must be below overbought ({overbought})"
            )
        self.bb_period = targets.integer(bb_period, "bb_period", minimum=2)
        self.bb_dev = targets.number(bb_dev, "bb_dev", low=0.0, high=1e6)
        if not self.bb_dev > 0:
            raise ValueError(f"bb_dev must be > 0, got {bb_dev}")
        self.qty = targets.quantity(qty)
        self.allow_short = targets.flag(allow_short, "allow_short")
        self.order_type = targets.order_type(order_type)
        self.limit_offset = targets.number(limit_offset, "limit_offset", low=0.0, high=1.0)
        if not self.limit_offset < 1.0:
            raise ValueError(f"limit_offset must be below 1, got {limit_offset}")
        if self.limit_offset and self.order_type != "limit":
            raise ValueError(f'limit_offset needs order_type = "limit", not {order_type!r}')
        self.time_in_force = targets.time_in_force(time_in_force)
        self.rsi = Spec("rsi", {"timeperiod": self.rsi_period})
        self.bbands = Spec(
            "bbands",
            {"timeperiod": self.bb_period, "nbdevup": self.bb_dev, "nbdevdn": self.bb_dev},
        )
        self.indicators: tuple[Spec, ...] = (self.rsi, self.bbands)
        self.events: frozenset[type] = frozenset({Bar, CryptoBar})

    def __repr__(self) -> str:
        return (
            f"RsiReversion(name={self.name!r}, symbols={list(self.symbols)}, "
            f"rsi_period={self.rsi_period}, oversold={self.oversold:g}, "
            f"exit_level={self.exit_level:g}, overbought={self.overbought:g}, "
            f"bb_period={self.bb_period}, bb_dev={self.bb_dev:g}, qty={self.qty}, "
            f"allow_short={self.allow_short}, order_type={self.order_type!r}, "
            f"limit_offset={self.limit_offset:g})"
        )

    def decide(
        self, close: float, rsi: float, upper: float, middle: float, lower: float, held: Decimal
    ) -> tuple[Decimal, str] | None:
        """The rule on one bar's values: ``(target, reason)``, or None to keep ``held``."""
        if rsi < self.oversold and close < lower:
            return self.qty, (
                f"oversold: rsi {rsi:.2f} < {self.oversold:g} and close {close:.6g} "
                f"< lower band {lower:.6g}"
            )
        if self.allow_short and rsi > self.overbought and close > upper:
            return -self.qty, (
                f"overbought: rsi {rsi:.2f} > {self.overbought:g} and close {close:.6g} "
                f"> upper band {upper:.6g}"
            )
        if held > 0:
            if rsi > self.exit_level:
                return Decimal(0), f"exit long: rsi {rsi:.2f} > {self.exit_level:g}"
            if close > middle:
                return Decimal(0), f"exit long: close {close:.6g} > middle band {middle:.6g}"
        elif held < 0:
            level = 100.0 - self.exit_level
            if rsi < level:
                return Decimal(0), f"exit short: rsi {rsi:.2f} < {level:g}"
            if close < middle:
                return Decimal(0), f"exit short: close {close:.6g} < middle band {middle:.6g}"
        return None

    def limit_price(self, close: float, buying: bool) -> Decimal:
        """The close, or with ``limit_offset`` a passive price: below it to buy, above it to
        sell, rounded away from the market to the venue's tick (a cent, 0.0001 below $1)."""
        if not self.limit_offset:
            return targets.price(close)
        tick = Decimal("0.01") if close >= 1 else Decimal("0.0001")
        away = 1 - self.limit_offset if buying else 1 + self.limit_offset
        return (targets.price(close * away) / tick).to_integral_value(
            ROUND_FLOOR if buying else ROUND_CEILING
        ) * tick

    def on_event(
        self, event: Any, view: IndicatorView | None, context: Context
    ) -> Sequence[OrderIntent]:
        if view is None or not isinstance(event, Bar | CryptoBar) or not view.warmed:
            return ()
        symbol = view.symbol
        close = float(event.close)
        decision = self.decide(
            close,
            view[self.rsi],
            view[self.bbands, "upperband"],
            view[self.bbands, "middleband"],
            view[self.bbands, "lowerband"],
            targets.exposure(context, symbol),
        )
        if decision is None:
            return ()
        target, reason = decision
        limit = None
        if self.order_type == "limit":
            buying = target > targets.exposure(context, symbol)
            limit = self.limit_price(close, buying)
        return targets.toward(
            target,
            strategy=self.name,
            symbol=symbol,
            event=event,
            context=context,
            reason=reason,
            type=self.order_type,
            limit_price=limit,
            time_in_force=self.time_in_force,
        )
