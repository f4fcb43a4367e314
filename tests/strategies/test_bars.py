"""Tick-to-bar aggregation equals a plain-Python definition of time bars, for random trades of
many symbols fed in random batch sizes, with late trades counted rather than folded in."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickd.strategies.indicators.bars import BAR_FIELDS, BarBank

NS = 1_000_000_000


def reference(
    trades: list[tuple[int, int, float, float]], seconds: int, now_ns: int
) -> tuple[list[tuple[float, ...]], list[int]]:
    """Bars by the book: per symbol, consecutive trades sharing a bar start form one bar; a
    trade whose bar start is before the open bar's (or an emitted bar's) is late."""
    open_bars: dict[int, list[Any]] = {}
    emitted: dict[int, float] = {}
    late: dict[int, int] = {}
    bars: list[tuple[float, ...]] = []

    def close(sym: int) -> None:
        start, prices, sizes = open_bars.pop(sym)
        vol = sum(sizes)
        pv = 0.0
        for p, q in zip(prices, sizes, strict=True):
            pv += p * q
        vwap = pv / vol if vol > 0 else math.nan
        bars.append(
            (sym, start, prices[0], max(prices), min(prices), prices[-1], vol, vwap, len(prices))
        )
        emitted[sym] = start

    for sym, ts, price, size in trades:
        secs = ts // NS
        start = float(secs - secs % seconds)
        bar = open_bars.get(sym)
        if start <= emitted.get(sym, -math.inf) or (bar is not None and start < bar[0]):
            late[sym] = late.get(sym, 0) + 1
            continue
        if bar is not None and start > bar[0]:
            close(sym)
            bar = None
        if bar is None:
            bar = open_bars[sym] = [start, [], []]
        bar[1].append(price)
        bar[2].append(size)
    for sym in sorted(open_bars):
        if open_bars[sym][0] + seconds <= now_ns // NS:
            close(sym)
    return bars, [late.get(s, 0) for s in range(max(late, default=0) + 1)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bars_equal_the_definition(data: Any) -> None:
    symbols = data.draw(st.integers(1, 4))
    seconds = data.draw(st.sampled_from([1, 5, 60]))
    n = data.draw(st.integers(0, 200))
    t0 = 1_700_000_000 * NS
    steps = data.draw(st.lists(st.integers(-2 * NS, 3 * NS), min_size=n, max_size=n))
    trades = []
    ts = t0
    for step in steps:
        ts += step
        trades.append(
            (
                data.draw(st.integers(0, symbols - 1)),
                ts,
                data.draw(st.floats(1.0, 1000.0)),
                data.draw(st.sampled_from([0.0, 1.0, 100.0, 0.5])),
            )
        )
    now = ts + data.draw(st.integers(0, 120 * NS))
    expected, late = reference(trades, seconds, now)

    bank = BarBank(symbols, seconds=seconds, capacity=64)
    got: list[tuple[float, ...]] = []
    size = data.draw(st.integers(1, 64))
    for i in range(0, n, size):
        chunk = trades[i : i + size]
        stamps, rows = BarBank.trades(len(chunk))
        for k, (sym, t, p, q) in enumerate(chunk):
            stamps[k] = t
            rows[k] = (sym, p, q)
        emitted = bank.update(stamps, rows)
        got.extend(tuple(r) for r in bank.bars[:emitted])
    emitted = bank.flush(now)
    got.extend(tuple(r) for r in bank.bars[:emitted])
    assert len(got) == len(expected)
    for mine, ref in zip(got, expected, strict=True):
        assert np.array_equal(np.array(mine), np.array(ref, dtype=float), equal_nan=True), (
            dict(zip(BAR_FIELDS, mine, strict=True)),
            dict(zip(BAR_FIELDS, ref, strict=True)),
        )
    assert bank.late[: len(late)].tolist() == late


def test_minute_bars_start_on_the_minute_and_carry_vwap_and_count() -> None:
    bank = BarBank(2, seconds=60)
    minute = 1_700_000_040  # a multiple of 60
    t = (minute + 40) * NS
    stamps = np.array([t, t + 5 * NS, t + 10 * NS, t + 25 * NS], dtype=np.int64)
    trades = np.array([[0, 10.0, 1.0], [0, 12.0, 3.0], [1, 5.0, 2.0], [0, 11.0, 1.0]])
    assert bank.update(stamps, trades) == 1  # the 4th trade opens the next minute for symbol 0
    symbol, start, o, h, lo, c, v, vwap, count = bank.bars[0]
    assert (symbol, start, o, h, lo, c, v, count) == (0, minute, 10, 12, 10, 12, 4, 2)
    assert vwap == pytest.approx((10 * 1 + 12 * 3) / 4)
    assert bank.flush(t + 20 * NS) == 1  # symbol 1's minute ended; symbol 0's has not
    assert bank.bars[0][0] == 1


def test_bar_bank_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seconds"):
        BarBank(1, seconds=0)
    bank = BarBank(2, capacity=2)
    stamps, trades = BarBank.trades(3)
    with pytest.raises(ValueError, match="capacity"):
        bank.update(stamps, trades)
    stamps, trades = BarBank.trades(1)
    trades[0, 0] = 5
    with pytest.raises(ValueError, match="symbol"):
        bank.update(stamps, trades)
    with pytest.raises(ValueError, match="timestamps"):
        bank.update(stamps[:0], trades)


_FIRST_CALL = """
import numpy as np
from tickd.strategies.indicators import bars
print("import", len(bars._aggregate.signatures), len(bars._flush.signatures))
try:
    bars._flush(np.zeros(8, dtype=np.int64), 1)  # an int64 buffer: not the declared float64
except TypeError as exc:
    print("TypeError", str(exc).split(":")[0], len(bars._flush.signatures))
bank = bars.BarBank(1)
print("built", len(bars._aggregate.signatures), len(bars._flush.signatures))
stamps, trades = bars.BarBank.trades(1)
for ts in (stamps.astype(np.float64), stamps, stamps.astype(np.float64)):
    try:
        print("update", bank.update(ts, trades))
    except TypeError as exc:
        print("TypeError", str(exc).split(":")[0])
print("signatures", len(bars._aggregate.signatures), len(bars._flush.signatures))
"""


def test_bar_kernels_compile_when_a_bar_bank_is_built_for_their_declared_types_only() -> None:
    """Importing the indicators compiles nothing (every process imports them, warm-up workers
    included); building a bar bank, or a first call, compiles the declared signatures and no
    other."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True
    )
    wrong = (
        "TypeError No matching definition for argument type(s) array(float64, 1d, C), "
        "array(float64, 1d, C), array(float64, 2d, C)"
    )
    assert done.stdout.splitlines() == [
        "import 0 0",
        "TypeError No matching definition for argument type(s) array(int64, 1d, C), int64 1",
        "built 1 1",
        wrong,
        "update 0",
        wrong,
        "signatures 1 1",
    ]
