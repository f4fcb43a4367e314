"""Target-position sizing and parameter checks shared by the built-in strategies.

A built-in strategy decides on a *target* position for a symbol (``+qty``, ``0`` or ``-qty``)
and :func:`toward` turns it into at most one intent for ``target - (position + working)``: what
is held plus what is already on its way. An order still working is counted as if filled, so a
decision repeated before its fill never doubles it, and a reversal (long to short) is one order
of ``2 * qty``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

from tickd.strategies.base import Context, OrderIntent, OrderType, TimeInForce, event_id

__all__ = [
    "exposure",
    "flag",
    "integer",
    "number",
    "order_type",
    "price",
    "quantity",
    "strategy_name",
    "symbol_tuple",
    "time_in_force",
    "toward",
]


def exposure(context: Context, symbol: str) -> Decimal:
    """What ``symbol``'s position will be once every working order fills (signed)."""
    return context.position(symbol) + context.working(symbol)


def toward(
    target: Decimal,
    *,
    strategy: str,
    symbol: str,
    event: Any,
    context: Context,
    reason: str,
    type: OrderType = "market",
    limit_price: Decimal | None = None,
    time_in_force: TimeInForce = "day",
) -> tuple[OrderIntent, ...]:
    """The intent that takes ``symbol`` from its exposure to ``target``, or none if it is there.

    ``reason`` says why; the exposure and target are appended to it.
    """
    current = exposure(context, symbol)
    delta = target - current
    if delta == 0:
        return ()
    return (
        OrderIntent(
            strategy=strategy,
            symbol=symbol,
            side="buy" if delta > 0 else "sell",
            qty=abs(delta),
            type=type,
            limit_price=limit_price if type == "limit" else None,
            time_in_force=time_in_force,
            reason=f"{reason}; target {target:+} from {current:+}",
            event_id=event_id(event),
            ts_event=event.ts_event,
            ts_recv=event.ts_recv,
        ),
    )


def price(value: float) -> Decimal:
    """A float price as the shortest decimal that reads back as it (``101.23``, not
    ``101.2299999...``)."""
    return Decimal(repr(float(value)))


# --- parameter checks: each raises ValueError naming the parameter --------------------------------


def strategy_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name must be a non-empty string, got {value!r}")
    return value


def symbol_tuple(value: object) -> tuple[str, ...]:
    """Symbols as a tuple: non-empty strings, no duplicates, at least one."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"symbols must be a list of strings, got {value!r}")
    symbols = tuple(value)
    if not symbols:
        raise ValueError("symbols must name at least one symbol")
    for s in symbols:
        if not isinstance(s, str) or not s:
            raise ValueError(f"symbols must be non-empty strings, got {s!r}")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols must not repeat, got {list(symbols)}")
    return symbols


def quantity(value: object, name: str = "qty") -> Decimal:
    """A positive, finite quantity from a Decimal, int, float or decimal string."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        qty = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not qty.is_finite() or not qty > 0:
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
    return qty


def integer(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def number(value: object, name: str, *, low: float, high: float) -> float:
    """A finite float within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and low <= x <= high):
        raise ValueError(f"{name} must be within [{low:g}, {high:g}], got {value!r}")
    return x


def flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def order_type(value: object) -> OrderType:
    if value not in get_args(OrderType):
        raise ValueError(f"order_type must be one of {get_args(OrderType)}, got {value!r}")
    return value  # type: ignore[return-value]


def time_in_force(value: object) -> TimeInForce:
    if value not in get_args(TimeInForce):
        raise ValueError(f"time_in_force must be one of {get_args(TimeInForce)}, got {value!r}")
    return value  # type: ignore[return-value]
