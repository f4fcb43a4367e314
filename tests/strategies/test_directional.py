"""ADX, PLUS_DI and MINUS_DI beyond the generic tests: the StockCharts worked example, the
branch-free directional movement against TA-Lib's cases, and the edge cases TA-Lib's code
decides (zero true range, a period of 1, price scale)."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
import talib

from tests.strategies import oracle
from tickd.strategies.indicators import CATALOG, Stream, directional

DATA = Path(__file__).parents[1] / "data" / "prices"


def test_matches_the_stockcharts_worked_example_once_converged() -> None:
    # StockCharts seeds with 14 true ranges where TA-Lib takes 13; after 500 bars the two agree.
    with (DATA / "bukosabino-ta" / "cs-adx.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    high, low, close = (np.array([float(r[k]) for r in rows]) for k in ("High", "Low", "Close"))
    for name, column in (("adx", "ADX"), ("plus_di", "+DI14"), ("minus_di", "-DI14")):
        got = getattr(directional, name)(high, low, close, timeperiod=14)
        expected = np.array([float(r[column]) for r in rows[-5:]])
        np.testing.assert_allclose(got[-5:], expected, rtol=0, atol=1e-6)


@numba.njit
def _movement(high: float, low: float, prev_high: float, prev_low: float) -> tuple[float, float]:
    return directional.directional_movement(high, low, prev_high, prev_low)  # type: ignore[no-any-return]


def test_a_step_refuses_a_call_from_python() -> None:
    with pytest.raises(TypeError, match="directional_movement is a compiled step"):
        directional.directional_movement(1.0, 0.0, 1.0, 0.0)


def test_branch_free_movement_follows_talibs_cases() -> None:
    values = (-2.0, -1.0, 0.0, 1.0, 2.0, float("nan"))
    for high, low, prev_high, prev_low in itertools.product(values, repeat=4):
        up = high - prev_high
        down = prev_low - low
        plus = up if up > 0 and up > down else 0.0
        minus = down if down > 0 and up < down else 0.0
        got = _movement(high, low, prev_high, prev_low)
        assert got == (plus, minus), (high, low, prev_high, prev_low)


def edge_bars(scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bars with gaps, closes outside their range, equal moves both ways and a flat stretch
    (zero true range)."""
    rng = np.random.default_rng(5)
    close = np.round(100 + np.cumsum(rng.normal(size=400)), 1)
    high = close + np.round(rng.uniform(0, 1, 400), 1)
    low = close - np.round(rng.uniform(0, 1, 400), 1)
    close[::9] = high[::9] + 1
    high[50::11] = high[49::11] + 0.5  # up and down moves of the same size
    low[50::11] = low[49::11] - 0.5
    high[200:240] = low[200:240] = close[200:240] = 100.0
    return high * scale, low * scale, close * scale


@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e12])
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("adx", {}),
        ("adx", {"timeperiod": 2}),
        ("plus_di", {}),
        ("plus_di", {"timeperiod": 1}),
        ("minus_di", {"timeperiod": 3}),
        ("minus_di", {"timeperiod": 1}),
    ],
)
def test_edge_cases_match_talib_in_batch_and_streaming(
    scale: float, name: str, params: dict[str, Any]
) -> None:
    high, low, close = edge_bars(scale)
    ours = CATALOG[name].batch(high, low, close, **params)
    ref = getattr(talib, name.upper())(high, low, close, **params)
    assert np.array_equal(ours, ref, equal_nan=True)
    stream = Stream(name, **params)
    for i in range(len(close)):
        got = stream.update(close[i], high=high[i], low=low[i])
        assert np.array_equal(got, ours[i], equal_nan=True)


def test_a_nan_true_range_zeroes_the_di_and_holds_the_adx_as_talib_does() -> None:
    high, low, close = edge_bars(1.0)
    low[300] = np.nan
    for name in ("plus_di", "minus_di", "adx"):
        ours = oracle.as_tuple(CATALOG[name].batch(high, low, close))
        ref = oracle.as_tuple(getattr(talib, name.upper())(high, low, close))
        assert np.array_equal(ours[0], ref[0], equal_nan=True)
    assert (directional.plus_di(high, low, close)[300:] == 0.0).all()
    adx = directional.adx(high, low, close)
    assert (adx[300:] == adx[299]).all()
