"""Volatility: STDDEV, BBANDS, TRANGE, ATR, NATR and rolling ZSCORE (TA-Lib definitions)."""

from __future__ import annotations

from tickd.strategies.indicators.jit import step


@step
def dispatch(kind, st, b, high, low, close, volume, session, out, o):
    """Run the streaming step of indicator ``kind``; False if the kind is not from this module."""
    return False


INDICATORS = ()
