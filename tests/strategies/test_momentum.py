"""Momentum kernels: worked examples two independent tools agree on, and the corner cases random
series never reach (flat stretches, empty windows, NaN mid-series, swapped periods)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib

from tests.strategies import oracle
from tests.strategies.prices import ROOT
from tickd.codecs.synthetic.market import Ohlcv, price_path
from tickd.strategies.indicators import CATALOG, Stream
from tickd.strategies.indicators import momentum as mo

NAMES = ("rsi", "macd", "roc", "mom", "cci", "ultosc", "mfi")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r[name] else np.nan for r in rows])


@pytest.mark.parametrize(
    ("file", "name", "params", "expected", "atol"),
    [
        ("cs-cci.csv", "cci", {"timeperiod": 20}, "CCI", 5e-4),
        ("cs-mfi.csv", "mfi", {"timeperiod": 14}, "MFI", 5e-5),
        ("cs-ultosc.csv", "ultosc", {}, "Ult_Osc", 5e-6),
        ("cs-roc.csv", "roc", {"timeperiod": 12}, "ROC", 5e-8),
    ],
)
def test_stockcharts_worked_examples(
    file: str, name: str, params: dict[str, Any], expected: str, atol: float
) -> None:
    """StockCharts' worked examples (as rebuilt by the ta library), printed to a few decimals."""
    rows = _rows(ROOT / "bukosabino-ta" / file)
    ind = CATALOG[name]
    (ours,) = oracle.as_tuple(ind.batch(*(_column(rows, k.title()) for k in ind.inputs), **params))
    want = _column(rows, expected)
    assert np.array_equal(np.isnan(ours), np.isnan(want))
    np.testing.assert_allclose(ours[~np.isnan(want)], want[~np.isnan(want)], rtol=0, atol=atol)


def test_backtrader_reference_values_that_agree_with_talib() -> None:
    """backtrader's checked values for 2006-day-001 (the rows SOURCES.md marks as agreeing)."""
    rows = [
        r
        for r in _rows(ROOT / "backtrader" / "2006-day-001.expected.csv")
        if r["agrees_with_talib"] == "yes" and r["indicator"] in ("RSI", "MOM", "ULTOSC", "MACD")
    ]
    assert len(rows) == 14
    bars = _rows(ROOT / "backtrader" / "2006-day-001.txt")
    high, low, close = (_column(bars, k) for k in ("High", "Low", "Close"))
    results = {
        "RSI": {"rsi": mo.rsi(close, 14)},
        "MOM": {"momentum": mo.mom(close, 12)},
        "ULTOSC": {"uo": mo.ultosc(high, low, close, 7, 14, 28)},
        "MACD": dict(zip(("macd", "signal", "histo"), mo.macd(close, 12, 26, 9), strict=True)),
    }
    for r in rows:
        got = results[r["indicator"]][r["line"]][int(r["bar_index"])]
        assert abs(got - float(r["expected_backtrader"])) <= 5e-7, r


def _corner_cases(seed: int) -> Ohlcv:
    """Bars with a flat stretch (no range, no move, no volume), then a NaN in each field."""
    bars = price_path(400, seed=seed)
    for field in (bars.open, bars.high, bars.low, bars.close):
        field[60:140] = bars.close[59]
    bars.volume[100:180] = 0.0
    bars.close[220] = np.nan
    bars.high[260] = np.nan
    bars.low[300] = np.nan
    bars.volume[340] = np.nan
    return bars


PARAMS = {
    "rsi": [{"timeperiod": 2}, {"timeperiod": 14}],
    "macd": [{}, {"fastperiod": 30, "slowperiod": 5, "signalperiod": 1}],
    "roc": [{"timeperiod": 1}, {}],
    "mom": [{"timeperiod": 1}, {}],
    "cci": [{"timeperiod": 2}, {}, {"timeperiod": 45}],
    "ultosc": [{}, {"timeperiod1": 40, "timeperiod2": 1, "timeperiod3": 9}],
    "mfi": [{"timeperiod": 2}, {}, {"timeperiod": 60}],
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("name", "params"), [(n, p) for n in NAMES for p in PARAMS[n]])
def test_corner_cases_match_talib_bit_for_bit_in_batch_and_streaming(
    name: str, params: dict[str, Any], seed: int
) -> None:
    """Flat stretches empty the windows (TA-Lib then reseeds its sums at exactly 0) and NaN
    mid-series takes TA-Lib's compiled path (a NaN change is an RSI loss, which yields 0)."""
    bars = _corner_cases(seed)
    expected = oracle.theirs(name, bars, **params)
    batch = oracle.ours(name, bars, **params)
    assert oracle.agree(batch, expected, name), f"{name} is not bit-exact"
    stream = Stream(name, **params)
    for i in range(len(bars.close)):
        got = oracle.as_tuple(
            stream.update(bars.close[i], bars.high[i], bars.low[i], bars.volume[i])
        )
        assert np.array_equal(got, [b[i] for b in batch], equal_nan=True), (name, i)


def test_rsi_after_a_nan_is_zero_as_in_talib() -> None:
    close = price_path(60, seed=4).close
    close[30] = np.nan
    out = mo.rsi(close, 5)
    assert np.isfinite(out[5:30]).all() and (out[30:] == 0.0).all()


def test_macd_swaps_fast_and_slow_and_ultosc_sorts_its_periods() -> None:
    bars = price_path(300, seed=5)
    for a, b in zip(mo.macd(bars.close, 26, 12, 9), mo.macd(bars.close, 12, 26, 9), strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    hlc = (bars.high, bars.low, bars.close)
    assert np.array_equal(mo.ultosc(*hlc, 28, 7, 14), mo.ultosc(*hlc), equal_nan=True)


def test_roc_of_a_zero_price_is_zero() -> None:
    close = np.array([0.0, 1.0, 2.0, 4.0])
    assert mo.roc(close, 1)[1:].tolist() == [0.0, 100.0, 100.0]


def test_rsi_is_bit_exact_in_the_last_value_of_short_series() -> None:
    """The last Wilder step's product, used only by the final sum, was once fused into it: one
    ULP off TA-Lib in the last value of about 7 % of short series (a long one has one last
    value, so the parity tests missed it; the bank, which stores every step, did not)."""
    rng = np.random.default_rng(5)
    differ = []
    for _ in range(2_000):
        period = int(rng.integers(2, 30))
        close = np.round(
            100 + np.cumsum(rng.normal(0, 0.05, int(rng.integers(period + 2, 121)))), 8
        )
        if not np.array_equal(mo.rsi(close, period), talib.RSI(close, period), equal_nan=True):
            differ.append((period, len(close)))
    assert differ == []
