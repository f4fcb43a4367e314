"""EMA crossover (trend following): long while the fast EMA of closes is above the slow one.

Configuration (``kind = "ema_cross"``)::

    name           the strategy's name (in every intent and client order id)
    symbols        the symbols it trades
    fast = 12      fast EMA period (bars), >= 2
    slow = 26      slow EMA period (bars), > fast
    qty = 1        shares (or coins) per symbol: the size of the position it aims at
    allow_short = false
    time_in_force = "day"

The rule, per symbol, on its bars (closes):

* The signal is +1 while ``ema(fast) > ema(slow)``, -1 while ``ema(fast) < ema(slow)``, and 0
  while either is still warming up (NaN: the first ``slow - 1`` bars) or the two are exactly
  equal.
* It acts only on a *cross*: a signal of +1 when the last non-zero signal was -1, or -1 when it
  was +1 (a tie in between does not hide a cross, nor make one). The first signal after warm-up
  is not a cross, so a strategy started in the middle of a trend waits for the next cross.
* On a cross up the target position is ``+qty``; on a cross down it is ``-qty`` with
  ``allow_short``, else 0 (exit). It sends one market order for ``target - (position +
  working)``, so a pending order is never doubled and a reversal is one order of ``2 * qty``.

It is a :class:`~tickd.strategies.base.SignalStrategy`: :func:`ema_cross_signal` is evaluated
by the host for every bar in one compiled pass, and :meth:`EmaCross.on_signal` runs only where
a symbol's signal changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

from tickd.codecs.schema import Bar, CryptoBar
from tickd.strategies import targets
from tickd.strategies.base import Context, IndicatorView, OrderIntent, TimeInForce
from tickd.strategies.indicators import Spec

__all__ = ["EmaCross", "ema_cross_signal"]


@njit(cache=True)
def ema_cross_signal(
    values: NDArray[np.float64], columns: NDArray[np.int64]
) -> int:  # pragma: no cover - compiled (tested through the scan and called directly)
    """+1 if the fast EMA (``columns[0]``) is above the slow one (``columns[1]``), -1 if below,
    0 if either is NaN (warm-up) or they are equal."""
    fast = values[columns[0]]
    slow = values[columns[1]]
    if fast > slow:
        return 1
    if fast < slow:
        return -1
    return 0


class EmaCross:
    """Long (or short) on EMA crosses; see the module's documentation for the rule."""

    def __init__(
        self,
        *,
        name: str,
        symbols: Sequence[str],
        fast: int = 12,
        slow: int = 26,
        qty: Decimal | int | float | str = Decimal(1),
        allow_short: bool = False,
        time_in_force: TimeInForce = "day",
    ) -> None:
        self.name = targets.strategy_name(name)
        self.symbols = targets.symbol_tuple(symbols)
        self.fast = targets.integer(fast, "fast", minimum=2)
        self.slow = targets.integer(slow, "slow", minimum=3)
        if not self.fast < self.slow:
            raise ValueError(f"fast ({fast}) must be less than slow ({slow})")
        self.qty = targets.quantity(qty)
        self.allow_short = targets.flag(allow_short, "allow_short")
        self.time_in_force = targets.time_in_force(time_in_force)
        self.fast_ema = Spec("ema", {"timeperiod": self.fast})
        self.slow_ema = Spec("ema", {"timeperiod": self.slow})
        self.indicators: tuple[Spec, ...] = (self.fast_ema, self.slow_ema)
        self.events: frozenset[type] = frozenset({Bar, CryptoBar})
        self.signal: Callable[..., int] = ema_cross_signal
        # Per symbol: the last non-zero signal since its warm-up (what a new signal crosses).
        self._side: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"EmaCross(name={self.name!r}, symbols={list(self.symbols)}, fast={self.fast}, "
            f"slow={self.slow}, qty={self.qty}, allow_short={self.allow_short})"
        )

    def on_event(
        self, event: Any, view: IndicatorView | None, context: Context
    ) -> Sequence[OrderIntent]:
        """Nothing: this strategy decides in :meth:`on_signal`."""
        return ()

    def on_signal(
        self, event: Any, view: IndicatorView, signal: int, previous: int, context: Context
    ) -> Sequence[OrderIntent]:
        """Called where ``view.symbol``'s signal changed from ``previous`` to ``signal``."""
        symbol = view.symbol
        if signal == 0:
            if not view.warmed:  # warming up (again): no side to cross from
                self._side.pop(symbol, None)
            return ()
        before = self._side.get(symbol, 0)
        self._side[symbol] = signal
        if before != -signal:
            return ()
        fast, slow = view[self.fast_ema], view[self.slow_ema]
        if signal > 0:
            target = self.qty
            reason = f"ema({self.fast}) crossed above ema({self.slow}): {fast:.6g} > {slow:.6g}"
        else:
            target = -self.qty if self.allow_short else Decimal(0)
            reason = f"ema({self.fast}) crossed below ema({self.slow}): {fast:.6g} < {slow:.6g}"
        return targets.toward(
            target,
            strategy=self.name,
            symbol=symbol,
            event=event,
            context=context,
            reason=reason,
            time_in_force=self.time_in_force,
        )
