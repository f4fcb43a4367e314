"""Kernels that compute several bars at once in vector lanes (CCI, ULTOSC, ADX): bit for bit
TA-Lib's across the edges of their blocks and lanes, and compiled with the SLP vectorizer
without leaving numba's global setting changed."""

from __future__ import annotations

import numba.core.config
import numpy as np
import pytest
import talib

from tickd.strategies.indicators import adx, cci, ultosc
from tickd.strategies.indicators import momentum as mo
from tickd.strategies.indicators.jit import LaneKernel


def _bars(size: int, seed: int, flat: slice | None = None) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(size=size))
    high = close + rng.random(size)
    low = close - rng.random(size)
    if flat is not None:  # bars without range or move: TA-Lib's idle windows
        high[flat] = low[flat] = close[flat] = close[flat.start - 1]
    return high, low, close


def _same(ours: np.ndarray, ref: np.ndarray) -> None:
    differ = np.flatnonzero(~((ours == ref) | (np.isnan(ours) & np.isnan(ref))))
    assert differ.size == 0, f"first rows that differ: {differ[:5]}"


@pytest.mark.parametrize("timeperiod", [2, 3, 14, 33])
@pytest.mark.parametrize("extra", [-1, 0, 1, 31, 33])
def test_cci_is_talib_across_table_blocks_and_lane_groups(timeperiod: int, extra: int) -> None:
    # a table block holds _CCI_CYCLES cycles of timeperiod bars; lanes go 32 cycles at a time
    size = 2 * mo._CCI_CYCLES * timeperiod + extra * timeperiod + timeperiod // 2
    high, low, close = _bars(size, seed=timeperiod + extra)
    close[size // 3] = np.nan  # one NaN lane: it must not reach its neighbours
    _same(cci(high, low, close, timeperiod), talib.CCI(high, low, close, timeperiod))


@pytest.mark.parametrize("size", [29, 31, 32, 33, 28 + mo.BLOCK, 29 + mo.BLOCK, 3 * mo.BLOCK + 7])
def test_ultosc_is_talib_across_blocks_with_and_without_flat_bars(size: int) -> None:
    plain = _bars(size, seed=size)
    _same(ultosc(*plain), talib.ULTOSC(*plain))
    # a flat run longer than the longest window, across a block edge when the series is long
    start = max(2, min(size - 35, mo.BLOCK + 28 - 10))
    flat = _bars(size, seed=size, flat=slice(start, start + 30))
    _same(ultosc(*flat), talib.ULTOSC(*flat))


@pytest.mark.parametrize("size", [*range(27, 36), 1001, 1002, 1003, 1004])
def test_adx_is_talib_for_every_remainder_of_its_four_bar_steps(size: int) -> None:
    high, low, close = _bars(size, seed=size, flat=slice(20, 26))
    _same(adx(high, low, close), talib.ADX(high, low, close))


def test_lane_kernels_compile_with_slp_and_restore_numba_setting() -> None:
    before = numba.core.config.SLP_VECTORIZE
    for kernel in (mo._cci, mo._ultosc):
        assert isinstance(kernel, LaneKernel)
    high, low, close = _bars(100, seed=1)
    cci(high, low, close)  # compiles (or loads) the lane kernel
    slp_after = numba.core.config.SLP_VECTORIZE
    assert slp_after == before
