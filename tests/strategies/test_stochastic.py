"""STOCH, STOCHF and WILLR beyond the generic tests: published reference values, the edge cases
TA-Lib's code decides (zero range, close outside the range, price scale), and the two ways the
batch kernel finds window extremes agreeing bit for bit."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib

from tests.strategies import oracle, prices
from tickd.codecs.synthetic.market import price_path
from tickd.strategies.indicators import CATALOG, Stream, stochastic

DATA = Path(__file__).parents[1] / "data" / "prices"


def columns(path: Path, *names: str) -> list[np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [np.array([float(r[n]) if r[n] else np.nan for r in rows]) for n in names]


def test_willr_matches_the_stockcharts_worked_example() -> None:
    high, low, close, expected = columns(
        DATA / "bukosabino-ta" / "cs-percentr.csv", "High", "Low", "Close", "Williams_%R"
    )
    close = np.where(np.isnan(close), high, close)  # blank before the first %R; enters none
    got = stochastic.willr(high, low, close, timeperiod=14)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[13:], expected[13:], rtol=0, atol=1e-6)


def test_stochf_matches_the_stockcharts_worked_example() -> None:
    high, low, close, k, d = columns(
        DATA / "bukosabino-ta" / "cs-soo.csv", "High", "Low", "Close", "SO", "SO_SIG"
    )
    close = np.where(np.isnan(close), high, close)
    fastk, fastd = stochastic.stochf(high, low, close, fastk_period=14, fastd_period=3)
    for got, expected in ((fastk, k), (fastd, d)):
        both = ~np.isnan(got) & ~np.isnan(expected)
        assert both.sum() >= 14
        np.testing.assert_allclose(got[both], expected[both], rtol=0, atol=1e-6)


def test_matches_the_backtrader_values_that_talib_agrees_with() -> None:
    bars = prices.load(DATA / "backtrader" / "2006-day-001.txt")
    assert bars is not None
    slowk, slowd = stochastic.stoch(bars.high, bars.low, bars.close, 14, 3, 0, 3, 0)
    got = {
        "percR": stochastic.willr(bars.high, bars.low, bars.close, 14),
        "percK": slowk,
        "percD": slowd,
    }
    with (DATA / "backtrader" / "2006-day-001.expected.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["indicator"] in ("WILLR", "STOCH (slow)")]
    assert len(rows) == 9
    for r in rows:
        assert r["agrees_with_talib"] == "yes"
        value = got[r["line"]][int(r["bar_index"])]
        assert value == pytest.approx(float(r["expected_backtrader"]), abs=1e-6), r


@pytest.mark.parametrize(
    ("k", "sk", "sd"), [(1, 1, 1), (5, 3, 3), (14, 1, 3), (2, 7, 1), (37, 5, 9)]
)
def test_block_scan_and_talibs_tracking_agree_bit_for_bit_without_nan(
    k: int, sk: int, sd: int
) -> None:
    bars = price_path(3000, seed=k)
    # Prices on a 0.1 grid repeat (ties for both ways to settle), and a flat run has no range.
    high, low, close = (np.round(a, 1) for a in (bars.high, bars.low, bars.close))
    high[100:140] = low[100:140] = close[100:140] = 101.0
    close[500:520] = np.nan  # a NaN close leaves the extremes alone
    outs = []
    for run in (stochastic._stoch_blocks, stochastic._stoch_tracking):
        one, two = np.empty(3000), np.empty(3000)
        run(high, low, close, k, sk, sd, one, two)
        outs.append((one, two))
    for a, b in zip(*outs, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


def test_stochf_is_stoch_with_a_slow_k_period_of_one() -> None:
    bars = price_path(500, seed=4)
    high = bars.high.copy()
    high[[50, 51, 300]] = np.nan
    for k, d in ((1, 1), (5, 3), (9, 12)):
        fast = talib.STOCHF(high, bars.low, bars.close, k, d)
        slow = talib.STOCH(high, bars.low, bars.close, k, 1, 0, d, 0)
        ours = stochastic.stochf(high, bars.low, bars.close, k, d)
        for a, b, c in zip(fast, slow, ours, strict=True):
            assert np.array_equal(a, b, equal_nan=True) and np.array_equal(a, c, equal_nan=True)


def edge_bars(scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bars with closes above and below their range, a flat stretch (zero range) and ties."""
    rng = np.random.default_rng(3)
    close = np.round(100 + np.cumsum(rng.normal(size=400)), 1)
    high = close + np.round(rng.uniform(0, 1, 400), 1)
    low = close - np.round(rng.uniform(0, 1, 400), 1)
    close[::7] = high[::7] + 2
    close[3::7] = low[3::7] - 2
    high[200:230] = low[200:230] = close[200:230] = 100.0
    return high * scale, low * scale, close * scale


@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e12])
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("willr", {"timeperiod": 5}),
        ("willr", {"timeperiod": 2}),
        ("stoch", {}),
        ("stoch", {"fastk_period": 1, "slowk_period": 1, "slowd_period": 1}),
        ("stochf", {"fastk_period": 3, "fastd_period": 4}),
    ],
)
def test_edge_cases_match_talib_in_batch_and_streaming(
    scale: float, name: str, params: dict[str, Any]
) -> None:
    high, low, close = edge_bars(scale)
    ours = oracle.as_tuple(CATALOG[name].batch(high, low, close, **params))
    ref = oracle.as_tuple(getattr(talib, name.upper())(high, low, close, **params))
    for a, b in zip(ours, ref, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    stream = Stream(name, **params)
    for i in range(len(close)):
        got = oracle.as_tuple(stream.update(close[i], high=high[i], low=low[i]))
        assert np.array_equal(np.array(got), np.array([o[i] for o in ours]), equal_nan=True)


def test_willr_stays_within_its_range() -> None:
    high, low, close = edge_bars(1.0)
    out = stochastic.willr(high, low, close, 5)
    assert np.nanmin(out) == -100.0 and np.nanmax(out) == 0.0
