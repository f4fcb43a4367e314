"""The three forms share one definition: streaming and bank outputs equal the batch output
exactly, for random series, random parameters and random interleavings of symbols."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import oracle
from tickd.codecs.synthetic.market import price_path
from tickd.strategies.indicators import CATALOG, Bank, Spec, Stream, inputs
from tickd.strategies.indicators.jit import cache_dir

NAMES = sorted(CATALOG)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sessions(n: int, draw: Any) -> np.ndarray:
    """Session ids that step up now and then, as days do."""
    steps = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return np.cumsum(np.array(steps, dtype=np.float64))


def batch(name: str, bars: Any, session: np.ndarray, **params: Any) -> tuple[np.ndarray, ...]:
    ind = CATALOG[name]
    return oracle.as_tuple(ind.batch(*oracle.arrays(ind, bars, session), **params))


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("name", NAMES)
def test_streaming_equals_batch(name: str, data: Any) -> None:
    ind = CATALOG[name]
    params = data.draw(oracle.params(ind), label="params")
    bars = data.draw(oracle.series(max_size=200), label="bars")
    session = sessions(len(bars.close), data.draw)
    expected = np.column_stack(batch(name, bars, session, **params))
    stream = Stream(name, **params)
    lookback = ind.lookback(**ind.bind(**params))
    # Leading rows with a NaN input are skipped, as by TA-Lib's wrapper: warm-up starts after.
    first = inputs.valid_from(*oracle.arrays(ind, bars, session))
    for i in range(len(bars.close)):
        value = stream.update(
            bars.close[i],
            high=bars.high[i],
            low=bars.low[i],
            volume=bars.volume[i],
            session=session[i],
        )
        got = np.array(value if isinstance(value, tuple) else (value,))
        assert np.array_equal(got, expected[i], equal_nan=True), (name, params, i)
        assert stream.ready == (i - first >= lookback), (name, params, i)


@SETTINGS
@given(data=st.data())
def test_bank_equals_batch_for_interleaved_symbols(data: Any) -> None:
    names = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6), label="names")
    specs = [Spec(n, data.draw(oracle.params(CATALOG[n]), label=n)) for n in names]
    n_symbols = data.draw(st.integers(1, 5), label="symbols")
    series = [data.draw(oracle.series(max_size=120), label=f"bars{s}") for s in range(n_symbols)]
    session = [sessions(len(b.close), data.draw) for b in series]
    order = data.draw(
        st.permutations([s for s, b in enumerate(series) for _ in range(len(b.close))]),
        label="interleaving",
    )
    events = Bank.events(len(order))
    cursor = [0] * n_symbols
    for e, s in enumerate(order):
        i = cursor[s]
        cursor[s] += 1
        b = series[s]
        events[e] = (s, b.high[i], b.low[i], b.close[i], b.volume[i], session[s][i])
    chunk = data.draw(st.integers(1, 64), label="events per call")
    bank = Bank(specs, symbols=n_symbols, capacity=chunk)
    got = np.empty((len(order), len(bank.columns)))
    for start in range(0, len(order), chunk):
        part = events[start : start + chunk]
        got[start : start + len(part)] = bank.update(part)[: len(part)]
    symbols = np.array(order, dtype=np.int64)
    for s in range(n_symbols):
        mine = got[symbols == s]
        for spec in specs:
            expected = batch(spec.name, series[s], session[s], **spec.params)
            for k, output in enumerate(spec.indicator.outputs):
                col = bank.column(spec, output if len(expected) > 1 else None)
                assert np.array_equal(mine[:, col], expected[k], equal_nan=True), (
                    spec.label,
                    output,
                    s,
                )


def test_bank_reports_warm_up_per_symbol_and_resets() -> None:
    bank = Bank([Spec("sma", {"timeperiod": 3}), Spec("ema", {"timeperiod": 5})], symbols=2)
    events = Bank.events(4)
    events[:, 3] = [1.0, 2.0, 3.0, 4.0]
    bank.update(events)
    assert bank.ready(0).tolist() == [True, False]
    assert bank.ready(1).tolist() == [False, False]
    bank.reset(0)
    assert bank.ready(0).tolist() == [False, False]
    assert np.isnan(bank.update(events[:1])[0]).all()


def test_bank_keeps_one_symbols_nan_out_of_another() -> None:
    bars = price_path(60, seed=3)
    bank = Bank([Spec("ema", {"timeperiod": 10})], symbols=2, capacity=120)
    events = Bank.events(120)
    events[0::2, 0] = 0
    events[1::2, 0] = 1
    events[:, 3] = np.repeat(bars.close, 2)
    events[41, 3] = np.nan  # symbol 1's 21st price: its EMA is NaN from there on
    out = bank.update(events)
    assert not np.isnan(out[1:41:2, 0][9:]).any()
    assert np.isnan(out[41:120:2, 0]).all()
    assert np.array_equal(out[0:120:2, 0], CATALOG["ema"].batch(bars.close, 10), equal_nan=True)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [(0, 2.0, "symbol"), (0, -1.0, "symbol"), (0, 0.5, "symbol"), (0, np.nan, "symbol")],
)
def test_bank_refuses_an_event_for_an_unknown_symbol(
    column: int, value: float, message: str
) -> None:
    bank = Bank([Spec("sma")], symbols=2, capacity=4)
    events = Bank.events(2)
    events[1, column] = value
    with pytest.raises(ValueError, match=message):
        bank.update(events)


def test_bank_refuses_more_events_than_its_capacity_and_the_wrong_shape() -> None:
    bank = Bank([Spec("sma")], symbols=1, capacity=2)
    with pytest.raises(ValueError, match="capacity"):
        bank.update(Bank.events(3))
    with pytest.raises(ValueError, match="6 columns"):
        bank.update(np.zeros((1, 5)))
    with pytest.raises(TypeError):
        bank.update(np.zeros((1, 6), dtype=np.float32))
    with pytest.raises(TypeError):
        bank.update([[0.0] * 6])  # type: ignore[arg-type]


def test_bank_run_feeds_the_banks_own_rows_like_update() -> None:
    bars = price_path(300, seed=3)
    specs = [Spec("stoch"), Spec("ema", {"timeperiod": 7}), Spec("ema", {"timeperiod": 30})]
    events = Bank.events(300)
    events[:, 0] = np.arange(300) % 3
    events[:, 1], events[:, 2], events[:, 3] = bars.high, bars.low, bars.close
    by_update, by_run = Bank(specs, symbols=3, capacity=50), Bank(specs, symbols=3, capacity=50)
    for start in range(0, 300, 50):
        expected = by_update.update(events[start : start + 50]).copy()
        by_run.input[:] = events[start : start + 50]
        by_run.run(50)
        assert np.array_equal(by_run.out, expected, equal_nan=True)
    assert np.array_equal(by_run.state, by_update.state, equal_nan=True)
    with pytest.raises(ValueError, match="capacity"):
        by_run.run(51)
    with pytest.raises(ValueError, match="count"):
        by_run.run(-1)


def test_bank_loops_are_generated_once_per_list_of_indicators() -> None:
    first = Bank([Spec("rsi"), Spec("obv")], symbols=1)
    same_kinds = Bank([Spec("rsi", {"timeperiod": 5}), Spec("obv")], symbols=4)
    other_order = Bank([Spec("obv"), Spec("rsi")], symbols=1)
    assert first._run is same_kinds._run and first._run is not other_order._run
    module = sys.modules[first._run.py_func.__module__]
    source = Path(module.__file__ or "")
    assert source.parent == cache_dir() / "banks" and "rsi_step" in source.read_text()


def test_bank_names_its_columns_and_finds_them() -> None:
    macd = Spec("macd", {"fastperiod": 5})
    bank = Bank([Spec("ema", {"timeperiod": 12}), macd], symbols=1)
    assert bank.columns[0] == "ema(timeperiod=12)"
    assert bank.columns[bank.column(macd, "macdhist")].endswith(".macdhist")
    with pytest.raises(ValueError, match="name one"):
        bank.column(macd)
    with pytest.raises(ValueError, match="not 'nope'"):
        bank.column(macd, "nope")
