"""Moving averages against published reference values, and the corners of TA-Lib's installed
build that short random series seldom reach: KAMA's reset after a flat window, WMA's periodic
rebuild of its running sums, period 1, and long streams."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import talib

from tickd.codecs.synthetic.market import price_path
from tickd.strategies.indicators import CATALOG, Stream
from tickd.strategies.indicators.averages import dema, kama, sma, tema, wma

PRICES = Path(__file__).parents[1] / "data" / "prices"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _streamed(name: str, close: np.ndarray, **params: int) -> np.ndarray:
    stream = Stream(name, **params)
    return np.array([stream.update(c) for c in close])


def test_stockcharts_wma_9() -> None:
    rows = _rows(PRICES / "bukosabino-ta" / "cs-wma.csv")
    close = np.array([float(r["Close"]) for r in rows])
    expected = np.array([float(r["WMA"]) for r in rows])
    got = wma(close, 9)
    assert np.isnan(got[:8]).all()  # the file's first values come from bars it does not hold
    np.testing.assert_allclose(got[8:], expected[8:], rtol=0, atol=5e-5)  # file rounded to 4 dp


def test_stockcharts_kama_10() -> None:
    """StockCharts seeds with the 10th close; TA-Lib's first value is one EMA step from it."""
    rows = _rows(PRICES / "bukosabino-ta" / "cs-kama.csv")
    close = np.array([float(r["Close"]) for r in rows])
    expected = np.array([float(r["KAMA"]) for r in rows[10:]])
    got = kama(close, 10)
    assert np.isnan(got[:10]).all()
    np.testing.assert_allclose(got[10:], expected, rtol=0, atol=5e-7)  # file rounded to 6 dp


@pytest.mark.parametrize("name", ["wma", "dema", "tema"])
def test_backtrader_values_that_agree_with_talib(name: str) -> None:
    close = np.array([float(r["Close"]) for r in _rows(PRICES / "backtrader" / "2006-day-001.txt")])
    checks = [
        r
        for r in _rows(PRICES / "backtrader" / "2006-day-001.expected.csv")
        if r["indicator"] == name.upper() and r["agrees_with_talib"] == "yes"
    ]
    assert len(checks) == 3
    got = CATALOG[name].batch(close, timeperiod=30)
    for r in checks:
        assert got[int(r["bar_index"])] == pytest.approx(float(r["expected_backtrader"]), abs=5e-7)


def test_talib_regression_kama_10() -> None:
    """The values TA-Lib's own regression test expects (ta_regtest, test_ma.c)."""
    rows = _rows(PRICES / "ta-lib" / "ta_regtest_daily_ref_0.csv")
    got = kama(np.array([float(r["close"]) for r in rows]), 10)
    assert got[10] == pytest.approx(92.6575, abs=5e-5)
    assert got[11] == pytest.approx(92.7783, abs=5e-5)
    assert got[251] == pytest.approx(109.294, abs=5e-4)


def test_kama_resets_its_path_after_a_flat_window_as_talib_does() -> None:
    """A huge value leaves rounding residue in the running path (1.5e-8 here), which would make a
    flat window look inefficient (ratio 0, slow factor); after ``timeperiod`` flat moves TA-Lib
    resets the path to 0, so the ratio is 1 and KAMA closes 4/9 of the gap each bar."""
    close = price_path(300, seed=4).close
    close[150] = 1e9
    close[200:240] = close[200]
    got = kama(close, 10)
    assert np.array_equal(got, talib.KAMA(close, 10), equal_nan=True)
    gap = close[200] - got[214:239]
    np.testing.assert_allclose(gap[1:] / gap[:-1], 5 / 9, rtol=1e-9)
    assert np.array_equal(_streamed("kama", close, timeperiod=10), got, equal_nan=True)


def test_wma_rebuilds_its_sums_every_8_periods_as_talib_does() -> None:
    """Running sums drift after a huge value; TA-Lib rebuilds them every 8 * timeperiod values,
    so the outlier's residue goes away at the same bar in every form."""
    close = price_path(5_000, seed=5).close
    close[1_000] = 1e12
    for period in (2, 3, 7, 40):
        got = wma(close, period)
        assert np.array_equal(got, talib.WMA(close, period), equal_nan=True), period
        assert np.array_equal(_streamed("wma", close, timeperiod=period), got, equal_nan=True)


@pytest.mark.parametrize("func", [wma, dema, tema, kama])
def test_period_1_copies_the_input(func) -> None:  # type: ignore[no-untyped-def]
    close = price_path(50, seed=6).close
    close[[10, 30]] = [np.nan, -0.0]
    got = func(close, 1)
    assert np.array_equal(got, close, equal_nan=True)
    assert np.array_equal(_streamed(func.__name__, close, timeperiod=1), got, equal_nan=True)


def test_sma_of_period_1_is_a_running_sum_that_a_nan_poisons() -> None:
    """Unlike the other averages, TA-Lib's SMA has no copy path for period 1: it adds and then
    subtracts each value, so after a NaN every value is NaN."""
    close = price_path(50, seed=6).close
    close[10] = np.nan
    got = sma(close, 1)
    assert np.array_equal(got, talib.SMA(close, 1), equal_nan=True)
    assert np.isnan(got[10:]).all() and not np.isnan(got[:10]).any()
    assert np.array_equal(_streamed("sma", close, timeperiod=1), got, equal_nan=True)


@pytest.mark.parametrize("name", ["wma", "dema", "tema", "kama"])
def test_long_streams_equal_batch(name: str) -> None:
    close = np.round(price_path(3_000, seed=8).close, 1)  # flat runs for KAMA
    close[[700, 701, 1_500]] = [np.nan, np.inf, np.nan]
    for period in (2, 5, 30):
        expected = CATALOG[name].batch(close, timeperiod=period)
        assert np.array_equal(_streamed(name, close, timeperiod=period), expected, equal_nan=True)
