"""Volume kernels against published reference values, OBV's and AD's branchless updates against
TA-Lib's branches where they decide (unchanged closes, zero-range bars, non-finite volume, signed
zeros), and session VWAP, which TA-Lib lacks, against its definition.

bukosabino-ta's cs-vwap.csv is a rolling 14-bar VWAP, not a session-anchored one: it does not
check this definition, so it is not used here."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import talib

from tickd.codecs.synthetic.market import price_path
from tickd.strategies.indicators import Stream
from tickd.strategies.indicators.volume import ad, obv, vwap

PRICES = Path(__file__).parents[1] / "data" / "prices"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r[name] else np.nan for r in rows])


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal to the bit where numbers (so -0.0 differs from 0.0), NaN at the same rows."""
    nan = np.isnan(a)
    return bool(
        np.array_equal(nan, np.isnan(b))
        and np.array_equal(a[~nan].view(np.int64), b[~nan].view(np.int64))
    )


def _streamed(name: str, **columns: np.ndarray) -> np.ndarray:
    stream = Stream(name)
    close = columns.pop("close")
    return np.array(
        [
            stream.update(close[i], **{k: v[i] for k, v in columns.items()})
            for i in range(len(close))
        ]
    )


def test_stockcharts_on_balance_volume() -> None:
    rows = _rows(PRICES / "bukosabino-ta" / "cs-obv.csv")
    close, volume = _column(rows, "Close"), _column(rows, "Volume")
    got = obv(close, volume)  # the first bar has no volume: OBV starts at the second
    assert np.isnan(got[0])
    assert np.array_equal(got[1:], _column(rows, "OBV")[1:])


def test_stockcharts_accumulation_distribution() -> None:
    rows = _rows(PRICES / "bukosabino-ta" / "cs-accum.csv")
    high, low, close, volume = (_column(rows, k) for k in ("High", "Low", "Close", "Volume"))
    np.testing.assert_allclose(
        ad(high, low, close, volume), _column(rows, "ADLine"), rtol=0, atol=1e-3
    )


def test_obv_and_ad_decide_bar_by_bar_as_talibs_branches() -> None:
    """Repeated and NaN closes, zero-range and inverted bars, infinite and NaN volume on bars that
    do not count, and signed zeros: the same bits as TA-Lib, in batch and streaming."""
    bars = price_path(400, seed=12)
    close = np.round(bars.close, 1)  # many unchanged closes
    high, low = bars.high.copy(), bars.low.copy()
    close[[40, 41, 200]] = np.nan
    obv_volume = bars.volume.copy()
    obv_volume[0] = -0.0
    unchanged = np.flatnonzero(np.diff(close) == 0)[:3] + 1
    obv_volume[unchanged] = [np.inf, np.nan, -np.inf]
    high[[60, 61, 62, 63]] = low[[60, 61, 62, 63]]  # no range: AD skips the bar
    high[70], low[70] = low[70], high[70]  # inverted: skipped too
    ad_volume = bars.volume.copy()
    ad_volume[[61, 62, 70]] = [np.nan, np.inf, -np.inf]
    ad_volume[300] = obv_volume[300] = np.nan  # on a bar that counts: NaN from there on
    got = obv(close, obv_volume)
    assert _same_bits(got, talib.OBV(close, obv_volume)) and np.signbit(got[0])
    assert not np.isnan(got[299])
    assert _same_bits(_streamed("obv", close=close, volume=obv_volume), got)
    close = bars.close  # no NaN: it would end AD's sum at once
    got = ad(high, low, close, ad_volume)
    assert _same_bits(got, talib.AD(high, low, close, ad_volume)) and not np.isnan(got[299])
    assert _same_bits(_streamed("ad", close=close, high=high, low=low, volume=ad_volume), got)


def _vwap_reference(high, low, close, volume, session):  # type: ignore[no-untyped-def]
    """The definition, bar by bar, in plain Python."""
    out, pv, cv, previous = [], 0.0, 0.0, None
    for h, lo, c, v, s in zip(high, low, close, volume, session, strict=True):
        if previous is None or s != previous:
            pv = cv = 0.0
        previous = s
        pv += (h + lo + c) / 3 * v
        cv += v
        out.append(pv / cv if cv != 0 else math.nan)
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_vwap_matches_its_definition_on_random_sessions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bars = price_path(2_000, seed=seed)
    session = np.cumsum(rng.random(2_000) < 0.01).astype(np.float64) + 19_000.0
    volume = bars.volume.copy()
    starts = np.flatnonzero(np.diff(session)) + 1
    volume[starts[::2]] = 0.0  # some sessions open without volume: NaN until there is some
    columns = (bars.high, bars.low, bars.close, volume, session)
    got = vwap(*columns)
    expected = _vwap_reference(*(c.tolist() for c in columns))
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got[starts[::2]]).all()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_vwap_starts_afresh_at_each_session() -> None:
    high = np.array([11.0, 12.0, 13.0, 30.0, 31.0, 32.0])
    low = high - 2.0
    close = high - 1.0
    volume = np.array([1.0, 3.0, 0.0, 0.0, 2.0, 2.0])
    session = np.array([7.0, 7.0, 7.0, 8.0, 8.0, 8.0])
    got = vwap(high, low, close, volume, session)
    np.testing.assert_allclose(got, [10.0, 10.75, 10.75, np.nan, 30.0, 30.5], rtol=1e-15)
    streamed = _streamed("vwap", close=close, high=high, low=low, volume=volume, session=session)
    assert np.array_equal(streamed, got, equal_nan=True)


def test_vwap_nan_lasts_until_the_next_session() -> None:
    """A NaN price spoils the rest of its session only; a NaN session id starts a session of its
    own at every bar; leading rows with a NaN are skipped."""
    high = np.full(8, 11.0)
    low = np.full(8, 9.0)
    close = np.array([np.nan, 10.0, 10.0, np.nan, 10.0, 10.0, 10.0, 10.0])
    volume = np.ones(8)
    session = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 2.0, np.nan, np.nan])
    got = vwap(high, low, close, volume, session)
    expected = [np.nan, 10.0, 10.0, np.nan, np.nan, 10.0, 10.0, 10.0]
    assert np.array_equal(got, expected, equal_nan=True)
    streamed = _streamed("vwap", close=close, high=high, low=low, volume=volume, session=session)
    assert np.array_equal(streamed, got, equal_nan=True)
