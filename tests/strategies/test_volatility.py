"""Volatility kernels against published reference values, the corners of TA-Lib's rolling variance
that short random series seldom reach (re-anchoring at a high price level, flat windows, outliers,
NaN recovery), and ZSCORE, which TA-Lib lacks, against its definition."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import talib

from tickd.codecs.synthetic.market import price_path
from tickd.strategies.indicators import Stream
from tickd.strategies.indicators.volatility import atr, bbands, natr, stddev, trange, zscore

PRICES = Path(__file__).parents[1] / "data" / "prices"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r[name] else np.nan for r in rows])


def _streamed(name: str, close: np.ndarray, **params: float) -> np.ndarray:
    stream = Stream(name, **params)
    return np.array([stream.update(c) for c in close])


def _hard_series() -> dict[str, np.ndarray]:
    """Series on which TA-Lib's shifted sums re-anchor for each of their reasons."""
    rng = np.random.default_rng(1)
    walk = 100 + np.cumsum(rng.normal(0, 0.1, 3_000))
    flat = walk.copy()
    flat[1_000:1_200] = flat[1_000]
    spikes = 100 + rng.normal(0, 0.01, 3_000)
    spikes[::397] *= 1e6
    hole = walk.copy()
    hole[[500, 501, 2_000]] = np.nan
    return {
        "high level": 3e10 + rng.normal(0, 1e-3, 3_000),  # the variance is 1e-26 of x^2
        "flat window": flat,  # exactly 0, then 1e-12 floors
        "outliers": spikes,  # a squared deviation that buries the rest
        "drift": 1e4 + 50.0 * np.arange(3_000) + rng.normal(0, 1e-6, 3_000),  # stale shift
        "fine tick": np.round(100 + np.cumsum(rng.normal(0, 1e-8, 3_000)), 10),
        "nan hole": hole,  # NaN until the scheduled re-anchoring drops it
    }


HARD = _hard_series()


def test_stockcharts_bollinger_20_2() -> None:
    rows = _rows(PRICES / "bukosabino-ta" / "cs-bbands.csv")
    close = _column(rows, "Close")
    upper, middle, lower = bbands(close, 20, 2.0, 2.0)
    assert np.isnan(middle[:19]).all()
    np.testing.assert_allclose(middle[19:], _column(rows, "MiddleBand")[19:], rtol=0, atol=5e-6)
    np.testing.assert_allclose(upper[19:], _column(rows, "HighBand")[19:], rtol=0, atol=5e-6)
    np.testing.assert_allclose(lower[19:], _column(rows, "LowBand")[19:], rtol=0, atol=5e-6)
    deviation = _column(rows, "20-day Standard Deviation")[19:]
    np.testing.assert_allclose(stddev(close, 20)[19:], deviation, rtol=0, atol=5e-6)


@pytest.mark.parametrize("file", ["cs-atr.csv", "cs-atr2.csv"])
def test_stockcharts_true_range(file: str) -> None:
    """StockCharts' first TR is the first bar's range, which TA-Lib (and tickd) leave NaN."""
    rows = _rows(PRICES / "bukosabino-ta" / file)
    high, low, close = (_column(rows, k) for k in ("High", "Low", "Close"))
    got = trange(high, low, close)
    assert np.isnan(got[0])
    np.testing.assert_allclose(got[1:], _column(rows, "TR")[1:], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("indicator", "line"), [("ATR", "atr"), *(("BBANDS", k) for k in ("top", "mid", "bot"))]
)
def test_backtrader_values_that_agree_with_talib(indicator: str, line: str) -> None:
    bars = _rows(PRICES / "backtrader" / "2006-day-001.txt")
    high, low, close = (_column(bars, k) for k in ("High", "Low", "Close"))
    checks = [
        r
        for r in _rows(PRICES / "backtrader" / "2006-day-001.expected.csv")
        if r["indicator"] == indicator and r["line"] == line and r["agrees_with_talib"] == "yes"
    ]
    assert len(checks) == 3
    if indicator == "ATR":
        got = atr(high, low, close, 14)
    else:
        got = dict(zip(("top", "mid", "bot"), bbands(close, 20, 2.0, 2.0), strict=True))[line]
    for r in checks:
        assert got[int(r["bar_index"])] == pytest.approx(float(r["expected_backtrader"]), abs=5e-6)


@pytest.mark.parametrize("series", sorted(HARD))
def test_rolling_deviation_re_anchors_as_talib_does(series: str) -> None:
    close = HARD[series]
    for period in (2, 5, 20, 300):
        for nbdev in (1.0, 1.7):
            assert np.array_equal(
                stddev(close, period, nbdev), talib.STDDEV(close, period, nbdev), equal_nan=True
            ), (period, nbdev)
            for nbdevdn in (nbdev, 2.3):  # one width, or two: TA-Lib rounds these differently
                got = bbands(close, period, nbdev, nbdevdn)
                expected = talib.BBANDS(close, period, nbdev, nbdevdn)
                for a, b in zip(got, expected, strict=True):
                    assert np.array_equal(a, b, equal_nan=True), (period, nbdev, nbdevdn)


@pytest.mark.parametrize("series", ["high level", "outliers", "nan hole"])
def test_long_streams_re_anchor_with_batch(series: str) -> None:
    close = HARD[series]
    for period in (2, 20):
        expected = stddev(close, period, 1.5)
        assert np.array_equal(
            _streamed("stddev", close, timeperiod=period, nbdev=1.5), expected, equal_nan=True
        )
        assert np.array_equal(
            _streamed("zscore", close, timeperiod=period), zscore(close, period), equal_nan=True
        )
    stream = Stream("bbands", timeperiod=20, nbdevup=1.5, nbdevdn=2.5)
    got = np.array([stream.update(c) for c in close])
    expected = np.column_stack(bbands(close, 20, 1.5, 2.5))
    assert np.array_equal(got, expected, equal_nan=True)


def test_zscore_is_talib_sma_and_stddev() -> None:
    """Bit for bit (x - SMA) / STDDEV, NaN where the deviation is 0."""
    close = np.concatenate([price_path(20_000, seed=9).close, np.full(50, 101.0), HARD["nan hole"]])
    for period in (2, 20, 100):
        deviation = talib.STDDEV(close, period)
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = (close - talib.SMA(close, period)) / deviation
        expected[deviation == 0.0] = np.nan
        assert np.array_equal(zscore(close, period), expected, equal_nan=True), period
    assert np.isnan(zscore(close, 20)[20_000 + 19 : 20_000 + 50]).all()


def _zscore_reference(close: list[float], period: int) -> list[float]:
    """The definition, one window at a time: population mean and deviation of the last values."""
    out = [math.nan] * len(close)
    for i in range(period - 1, len(close)):
        window = close[i - period + 1 : i + 1]
        if min(window) == max(window):
            continue  # no deviation (rounding in the mean would make a tiny one up)
        mean = sum(window) / period
        deviation = math.sqrt(sum((x - mean) ** 2 for x in window) / period)
        out[i] = (close[i] - mean) / deviation
    return out


@pytest.mark.parametrize("seed", range(4))
def test_zscore_matches_its_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    close = 50 + np.cumsum(rng.normal(0, 1, 600))
    close[300:320] = close[300]  # flat: no deviation, so no z-score
    period = int(rng.integers(2, 40))
    got = zscore(close, period)
    expected = np.array(_zscore_reference(close.tolist(), period))
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert np.isnan(got[: period - 1]).all() and np.isnan(got[300 + period - 1 : 320]).all()


def test_atr_of_period_1_is_the_true_range() -> None:
    bars = price_path(2_000, seed=10)
    high, low, close = bars.high, bars.low, bars.close
    expected = trange(high, low, close)
    assert np.array_equal(atr(high, low, close, 1), expected, equal_nan=True)
    assert np.array_equal(natr(high, low, close, 1), expected, equal_nan=True)  # not normalized
    assert np.array_equal(talib.ATR(high, low, close, 1), expected, equal_nan=True)


def test_natr_is_zero_where_the_close_is_zero_as_in_talib() -> None:
    bars = price_path(200, seed=11)
    close = bars.close.copy()
    close[[50, 120]] = 0.0
    got = natr(bars.high, bars.low, close, 14)
    assert got[50] == 0.0 and got[120] == 0.0
    assert np.array_equal(got, talib.NATR(bars.high, bars.low, close, 14), equal_nan=True)
