"""Every batch kernel with a TA-Lib twin agrees with TA-Lib: same NaN warm-up, values within
1e-9 relative, and bit for bit except where listed in NOT_BIT_EXACT (the report the issue asks for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import oracle, prices
from tickd.codecs.synthetic.market import price_path
from tickd.strategies.indicators import CATALOG

#: Kernels that agree with TA-Lib within 1e-9 but not in every bit, and why.
NOT_BIT_EXACT: dict[str, str] = {}

LONG = price_path(100_000, seed=7)


@pytest.mark.parametrize("name", oracle.TWINS)
def test_matches_talib_on_1e5_synthetic_bars(name: str) -> None:
    exact = oracle.agree(oracle.ours(name, LONG), oracle.theirs(name, LONG), name)
    assert exact == (name not in NOT_BIT_EXACT), (
        f"{name}: bit-exact is {exact}; update NOT_BIT_EXACT to say so"
    )


@pytest.mark.parametrize("path", prices.real_files(), ids=lambda p: p.name)
def test_matches_talib_on_every_real_price_file(path: Path) -> None:
    bars = prices.load(path)
    assert bars is not None
    for name in oracle.TWINS:
        oracle.agree(oracle.ours(name, bars), oracle.theirs(name, bars), f"{name} on {path.name}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("name", oracle.TWINS)
def test_matches_talib_for_random_params_series_and_nan_holes(name: str, data: Any) -> None:
    """NaN in the input follows TA-Lib's behaviour, whatever the parameters."""
    ind = CATALOG[name]
    params = data.draw(oracle.params(ind), label="params")
    bars = data.draw(oracle.series(), label="bars")
    oracle.agree(oracle.ours(name, bars, **params), oracle.theirs(name, bars, **params), name)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_input_shorter_than_lookback_is_all_nan(name: str) -> None:
    ind = CATALOG[name]
    bound = ind.bind()
    n = ind.lookback(**bound)
    for size in {0, n}:
        bars = price_path(size, seed=1)
        for out in oracle.ours(name, bars):
            assert out.shape == (size,) and np.isnan(out).all(), (name, size)
