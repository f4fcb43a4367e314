"""TA-Lib as the oracle: call one of our indicators and its TA-Lib twin on the same inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import talib
from hypothesis import strategies as st

from tickd.codecs.synthetic.market import Ohlcv, price_path
from tickd.strategies.indicators import CATALOG
from tickd.strategies.indicators.catalog import Indicator

#: Indicators TA-Lib lacks; they are checked against their definitions instead.
OURS_ONLY = {"vwap", "zscore"}
TWINS = sorted(set(CATALOG) - OURS_ONLY)

#: Relative tolerance the issue sets for agreement with TA-Lib.
RTOL = 1e-9


def arrays(ind: Indicator, bars: Ohlcv, session: np.ndarray | None = None) -> list[np.ndarray]:
    """The batch function's positional inputs, taken from ``bars``."""
    fields = {"high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume}
    if session is None:
        session = np.zeros_like(bars.close)
    fields["session"] = session
    return [fields[name] for name in ind.inputs]


def as_tuple(result: Any) -> tuple[np.ndarray, ...]:
    return result if isinstance(result, tuple) else (result,)


def ours(name: str, bars: Ohlcv, **params: Any) -> tuple[np.ndarray, ...]:
    ind = CATALOG[name]
    return as_tuple(ind.batch(*arrays(ind, bars), **params))


def theirs(name: str, bars: Ohlcv, **params: Any) -> tuple[np.ndarray, ...]:
    """TA-Lib's output; where no row has every input a number, all NaN (TA-Lib would compute
    from the last row anyway, which no streaming form can match: see ``inputs.valid_from``)."""
    ind = CATALOG[name]
    given = arrays(ind, bars)
    result = as_tuple(getattr(talib, name.upper())(*given, **params))
    if len(bars.close) and np.isnan(np.column_stack(given)).any(axis=1).all():
        return tuple(np.full_like(r, np.nan) for r in result)
    return result


def agree(mine: tuple[np.ndarray, ...], ref: tuple[np.ndarray, ...], what: str) -> bool:
    """Assert same NaN positions and values within ``RTOL``; return True if bit-identical.

    Values are compared relative to the larger of the value and the output's typical size, so
    an oscillator crossing zero is not held to a relative error of a number near zero."""
    assert len(mine) == len(ref), what
    exact = True
    for k, (a, b) in enumerate(zip(mine, ref, strict=True)):
        assert a.dtype == np.float64 and a.shape == b.shape, f"{what} output {k}"
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            first = int(np.flatnonzero(nan_a != nan_b)[0])
            raise AssertionError(
                f"{what} output {k}: NaN differs first at {first}: ours {a[first]} "
                f"TA-Lib {b[first]}"
            )
        fa, fb = a[~nan_a], b[~nan_b]
        if fa.size:
            scale = np.maximum(np.abs(fb), np.median(np.abs(fb)))
            err = np.abs(fa - fb) / np.where(scale > 0, scale, 1.0)
            worst = int(np.argmax(err))
            assert err[worst] <= RTOL, (
                f"{what} output {k}: relative error {err[worst]:.3g} at finite value {worst}: "
                f"ours {fa[worst]!r} TA-Lib {fb[worst]!r}"
            )
        exact = exact and np.array_equal(a, b, equal_nan=True)
    return exact


@st.composite
def params(draw: st.DrawFn, ind: Indicator, max_period: int = 40) -> dict[str, Any]:
    """Random parameters within each parameter's range (periods capped to keep series short)."""
    out: dict[str, Any] = {}
    for p in ind.params:
        if p.integer:
            out[p.name] = draw(st.integers(int(p.low), int(min(p.high, max_period))))
        else:
            out[p.name] = draw(st.floats(max(p.low, -3.0), min(p.high, 3.0)))
    return out


@st.composite
def series(draw: st.DrawFn, max_size: int = 300, nan: bool = True) -> Ohlcv:
    """Realistic bars of random length, sometimes with NaN holes in them."""
    n = draw(st.integers(0, max_size))
    bars = price_path(n, seed=draw(st.integers(0, 2**32 - 1)))
    if nan and n and draw(st.booleans()):
        for field in draw(st.lists(st.sampled_from(bars._fields), min_size=1, max_size=3)):
            getattr(bars, field)[draw(st.integers(0, n - 1))] = np.nan
    return bars
