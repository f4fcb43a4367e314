"""Directional movement: ADX, PLUS_DI, MINUS_DI (TA-Lib's definitions and warm-up)."""

from __future__ import annotations

from tickd.strategies.indicators.jit import step


@step
def dispatch(kind, st, b, high, low, close, volume, session, out, o):
    """Run the streaming step of indicator ``kind``; False if the kind is not from this module."""
    return False


INDICATORS = ()
