"""Moving averages: SMA, EMA, WMA, DEMA, TEMA, KAMA (TA-Lib's definitions and warm-up).

Each indicator comes in three forms sharing one definition of the maths: the batch kernel
(``_sma``), the streaming step (``sma_step``, see :mod:`.catalog` for the state layout) and, through
:func:`dispatch`, the bank. Running sums are added and subtracted in TA-Lib's order so results
match it bit for bit.
"""

from __future__ import annotations

import numpy as np

from tickd.strategies.indicators import inputs
from tickd.strategies.indicators.catalog import Indicator, period
from tickd.strategies.indicators.jit import kernel, step

K_SMA = 100
K_EMA = 101

NAN = np.nan


# --- SMA -------------------------------------------------------------------------------------
@kernel
def _sma(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n - 1, size)] = NAN
    if size < n:
        return
    total = 0.0
    for i in range(n - 1):
        total += real[i]
    for i in range(n - 1, size):
        total += real[i]
        value = total
        total -= real[i - n + 1]
        out[i] = value / n


@step
def sma_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, running total, ring[timeperiod]
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    n = int(st[b + 1])
    ring = b + 3
    pos = int(count - 1.0) % n
    st[ring + pos] = close
    if count < n:
        st[b + 2] += close
        out[o] = NAN
        return
    value = st[b + 2] + close
    st[b + 2] = value - st[ring + int(count) % n]
    out[o] = value / n


def sma(real, timeperiod=30):
    """Simple moving average over ``timeperiod`` values; NaN for the first ``timeperiod - 1``."""
    bound = SMA.bind(timeperiod=timeperiod)
    x = inputs.series("real", real)
    start = inputs.valid_from(x)
    (out,) = inputs.output(x.shape[0], start)
    _sma(x[start:], bound["timeperiod"], out[start:])
    return out


SMA = Indicator(
    name="sma",
    kind=K_SMA,
    inputs=("close",),
    outputs=("real",),
    params=(period(),),
    batch=sma,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 3 + timeperiod,
)


# --- EMA -------------------------------------------------------------------------------------
@step
def ema_next(prev, x, k):
    """One EMA step, written as TA-Lib writes it (FMA-contracted, as its build is)."""
    return ((x - prev) * k) + prev


@kernel
def _ema(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n - 1, size)] = NAN
    if size < n:
        return
    k = 2.0 / (n + 1)
    total = 0.0
    for i in range(n):
        total += real[i]
    prev = total / n
    out[n - 1] = prev
    for i in range(n, size):
        prev = ema_next(prev, real[i], k)
        out[i] = prev


@step
def ema_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, k, running total then the average
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    n = st[b + 1]
    if count < n:
        st[b + 3] += close
        out[o] = NAN
    elif count == n:
        prev = (st[b + 3] + close) / n
        st[b + 3] = prev
        out[o] = prev
    else:
        prev = ema_next(st[b + 3], close, st[b + 2])
        st[b + 3] = prev
        out[o] = prev


def _ema_init(state, base, timeperiod):
    state[base + 1] = timeperiod
    state[base + 2] = 2.0 / (timeperiod + 1)


def ema(real, timeperiod=30):
    """Exponential moving average, k = 2 / (timeperiod + 1), seeded with the SMA of the first
    ``timeperiod`` values (TA-Lib's default); NaN for the first ``timeperiod - 1``."""
    bound = EMA.bind(timeperiod=timeperiod)
    x = inputs.series("real", real)
    start = inputs.valid_from(x)
    (out,) = inputs.output(x.shape[0], start)
    _ema(x[start:], bound["timeperiod"], out[start:])
    return out


EMA = Indicator(
    name="ema",
    kind=K_EMA,
    inputs=("close",),
    outputs=("real",),
    params=(period(),),
    batch=ema,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 4,
    init=_ema_init,
)


# --- bank dispatch ---------------------------------------------------------------------------
@step
def dispatch(kind, st, b, high, low, close, volume, session, out, o):
    """Run the streaming step of indicator ``kind``; False if the kind is not from this module."""
    if kind == K_SMA:
        sma_step(st, b, high, low, close, volume, session, out, o)
    elif kind == K_EMA:
        ema_step(st, b, high, low, close, volume, session, out, o)
    else:
        return False
    return True


INDICATORS = (SMA, EMA)
