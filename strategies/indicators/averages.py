"""Moving averages: SMA, EMA, WMA, DEMA, TEMA, KAMA (TA-Lib's definitions and warm-up).

Each indicator comes in three forms sharing one definition of the maths: the batch kernel
(``_sma``), the streaming step (``sma_step``, see :mod:`.catalog` for the state layout) and the
bank, which compiles the steps of its indicators into one loop. Running sums are added and
subtracted in TA-Lib's order so results match it bit for bit.
"""

from __future__ import annotations

import numpy as np

from tickd.strategies.indicators import inputs
from tickd.strategies.indicators.catalog import Indicator, period
from tickd.strategies.indicators.jit import kernel, step
from tickd.strategies.indicators.primitives import AHEAD, fence, prefetch

NAN = np.nan


@step
def copy(real, out):
    """``out[:] = real`` as a loop: numba's slice assignment drags in a shape-mismatch error
    formatter that takes seconds to compile."""
    for i in range(real.shape[0]):
        out[i] = real[i]


# --- SMA -------------------------------------------------------------------------------------
@kernel
def _sma(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    # No shortcut for n == 1: TA-Lib runs its running sum, so one NaN poisons every later value.
    out[: min(n - 1, size)] = NAN
    if size < n:
        return
    total = 0.0
    for i in range(n - 1):
        total += real[i]
    for i in range(n - 1, size):
        prefetch(real, i + AHEAD)
        total += real[i]
        value = total
        total -= real[i - n + 1]
        out[i] = value / n


@step
def sma_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, running total, ring position, ring[timeperiod]
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    n = st[b + 1]
    ring = b + 4
    pos = int(st[b + 3])
    st[ring + pos] = close
    pos = 0 if pos + 1 == n else pos + 1  # now the oldest value in the window
    st[b + 3] = pos
    if count < n:
        st[b + 2] += close
        out[o] = NAN
        return
    value = st[b + 2] + close
    st[b + 2] = value - st[ring + pos]
    out[o] = value / n


def sma(real, timeperiod=30):
    """Simple moving average over ``timeperiod`` values; NaN for the first ``timeperiod - 1``."""
    bound = SMA.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _sma(x, bound["timeperiod"], tail)
    return out


SMA = Indicator(
    name="sma",
    step=sma_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(low=1),),
    batch=sma,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 4 + timeperiod,
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
    if n == 1:  # TA-Lib returns the input unchanged
        copy(real, out)
        return
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
        prefetch(real, i + AHEAD)
        prev = ema_next(prev, real[i], k)
        out[i] = prev


@step
def ema_stage(st, s, v, m, n, k):
    """One input ``v`` into an EMA whose state is ``st[s]``: the running sum of its first ``n``
    inputs, then the average. ``m`` is the 0-based index of ``v`` among this EMA's inputs; NaN
    until the EMA is seeded. Chained, it is TA-Lib's EMA of an EMA (DEMA, TEMA): each stage starts
    at the first value of the previous one and is seeded with their average."""
    if m < n - 1:
        st[s] += v
        return NAN
    value = (st[s] + v) / n if m == n - 1 else ema_next(st[s], v, k)
    st[s] = value
    return value


@step
def ema_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, k, running total then the average
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    if st[b + 1] == 1.0:
        out[o] = close
        return
    out[o] = ema_stage(st, b + 3, close, count - 1.0, st[b + 1], st[b + 2])


def _ema_init(state, base, timeperiod):
    state[base + 1] = timeperiod
    state[base + 2] = 2.0 / (timeperiod + 1)


def ema(real, timeperiod=30):
    """Exponential moving average, k = 2 / (timeperiod + 1), seeded with the SMA of the first
    ``timeperiod`` values (TA-Lib's default); NaN for the first ``timeperiod - 1``."""
    bound = EMA.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _ema(x, bound["timeperiod"], tail)
    return out


EMA = Indicator(
    name="ema",
    step=ema_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(low=1),),
    batch=ema,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 4,
    init=_ema_init,
)


# --- WMA -------------------------------------------------------------------------------------
# TA-Lib's WMA is built without FMA: its products are rounded before they are added.
_RESCAN = 8  # TA-Lib rebuilds the running sums from the window every 8 * timeperiod values


@step
def _wma_sums(buf, first, count):
    """Plain and weighted sums of ``buf[first:first + count]``, weights 1..count, oldest first
    (TA-Lib's priming scan and its periodic rebuild)."""
    period_sub = 0.0
    period_sum = 0.0
    for w in range(1, count + 1):
        x = buf[first + w - 1]
        period_sub += x
        period_sum += fence(x * w)
    return period_sub, period_sum


@kernel
def _wma(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n - 1, size)] = NAN
    if size < n:
        return
    if n == 1:
        copy(real, out)  # TA-Lib copies the input
        return
    divider = n * (n + 1.0) * 0.5
    # period_sum holds each value of the window as many times as its weight and period_sub their
    # plain sum, so subtracting period_sub moves every weight down by one
    period_sub, period_sum = _wma_sums(real, 0, n - 1)
    trailing = 0.0
    countdown = _RESCAN * n
    # views offset by n - 1 keep every index non-negative: numba then drops its wraparound code
    ahead = real[n - 1 :]
    dest = out[n - 1 :]
    for j in range(size - n + 1):
        prefetch(ahead, j + AHEAD)
        countdown -= 1
        if countdown == 0:
            countdown = _RESCAN * n
            period_sub, period_sum = _wma_sums(real, j, n)
        else:
            x = ahead[j]
            period_sub += x
            period_sub -= trailing
            period_sum += fence(x * n)
        dest[j] = period_sum / divider
        period_sum -= period_sub
        trailing = real[j]


@step
def wma_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, plain sum, weighted sum, the window twice over ring[2 * timeperiod]
    # (value j at j % timeperiod and at timeperiod + j % timeperiod: any window is contiguous)
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    n = int(st[b + 1])
    if n == 1:
        out[o] = close
        return
    i = int(count) - 1
    ring = b + 4
    slot = i % n
    leaving = st[ring + slot]  # the value leaving the window; 0.0 for the first, as in TA-Lib
    st[ring + slot] = close
    st[ring + n + slot] = close
    if i < n - 1:
        st[b + 2] += close
        st[b + 3] += fence(close * count)
        out[o] = NAN
        return
    if (i - n + 2) % (_RESCAN * n) == 0:
        period_sub, period_sum = _wma_sums(st, ring + (slot + 1) % n, n)
    else:
        period_sub = st[b + 2] + close
        period_sub -= leaving
        period_sum = st[b + 3] + fence(close * n)
    out[o] = period_sum / (n * (n + 1.0) * 0.5)
    st[b + 2] = period_sub
    st[b + 3] = period_sum - period_sub


def wma(real, timeperiod=30):
    """Weighted moving average, weights 1..``timeperiod`` (newest heaviest); NaN for the first
    ``timeperiod - 1``."""
    bound = WMA.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _wma(x, bound["timeperiod"], tail)
    return out


WMA = Indicator(
    name="wma",
    step=wma_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(low=1),),
    batch=wma,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 4 + 2 * timeperiod,
)


# --- DEMA and TEMA ---------------------------------------------------------------------------
# EMA of EMA as TA-Lib computes it: each EMA seeded with the average of the first ``timeperiod``
# values of the one before, all advanced together in one pass. Period 1 copies the input.


@kernel
def _dema(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    lookback = 2 * (n - 1)
    out[: min(lookback, size)] = NAN
    if size <= lookback:
        return
    if n == 1:
        copy(real, out)
        return
    k = 2.0 / (n + 1)
    total = 0.0
    for i in range(n):
        total += real[i]
    e1 = total / n
    total = 0.0
    total += e1
    for i in range(n, lookback + 1):
        e1 = ema_next(e1, real[i], k)
        total += e1
    e2 = total / n
    out[lookback] = 2.0 * e1 - e2
    for i in range(lookback + 1, size):
        prefetch(real, i + AHEAD)
        e1 = ema_next(e1, real[i], k)
        e2 = ema_next(e2, e1, k)
        out[i] = 2.0 * e1 - e2


@step
def dema_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, k, then for each EMA its running total then its average
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    n = st[b + 1]
    k = st[b + 2]
    m = count - 1.0
    if n == 1.0:
        out[o] = close
        return
    e1 = ema_stage(st, b + 3, close, m, n, k)
    out[o] = NAN
    if m >= n - 1.0:
        e2 = ema_stage(st, b + 4, e1, m - (n - 1.0), n, k)
        out[o] = 2.0 * e1 - e2


def dema(real, timeperiod=30):
    """Double EMA, 2 EMA - EMA(EMA); NaN for the first ``2 * (timeperiod - 1)``."""
    bound = DEMA.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _dema(x, bound["timeperiod"], tail)
    return out


DEMA = Indicator(
    name="dema",
    step=dema_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(low=1),),
    batch=dema,
    lookback=lambda timeperiod: 2 * (timeperiod - 1),
    width=lambda timeperiod: 5,
    init=_ema_init,
)


@step
def _tema_value(e1, e2, e3):
    """3 EMA - 3 EMA(EMA) + EMA(EMA(EMA)), grouped and rounded as TA-Lib's build computes it."""
    return e3 + (fence(3.0 * e1) - fence(3.0 * e2))


@kernel
def _tema(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    lookback = 3 * (n - 1)
    out[: min(lookback, size)] = NAN
    if size <= lookback:
        return
    if n == 1:
        copy(real, out)
        return
    k = 2.0 / (n + 1)
    total = 0.0
    for i in range(n):
        total += real[i]
    e1 = total / n
    total = 0.0
    total += e1
    for i in range(n, 2 * n - 1):
        e1 = ema_next(e1, real[i], k)
        total += e1
    e2 = total / n
    total = 0.0
    total += e2
    for i in range(2 * n - 1, lookback + 1):
        e1 = ema_next(e1, real[i], k)
        e2 = ema_next(e2, e1, k)
        total += e2
    e3 = total / n
    out[lookback] = _tema_value(e1, e2, e3)
    for i in range(lookback + 1, size):
        prefetch(real, i + AHEAD)
        e1 = ema_next(e1, real[i], k)
        e2 = ema_next(e2, e1, k)
        e3 = ema_next(e3, e2, k)
        out[i] = _tema_value(e1, e2, e3)


@step
def tema_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, k, then for each EMA its running total then its average
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    n = st[b + 1]
    k = st[b + 2]
    m = count - 1.0
    if n == 1.0:
        out[o] = close
        return
    e1 = ema_stage(st, b + 3, close, m, n, k)
    out[o] = NAN
    if m >= n - 1.0:
        e2 = ema_stage(st, b + 4, e1, m - (n - 1.0), n, k)
        if m >= 2.0 * (n - 1.0):
            e3 = ema_stage(st, b + 5, e2, m - 2.0 * (n - 1.0), n, k)
            out[o] = _tema_value(e1, e2, e3)


def tema(real, timeperiod=30):
    """Triple EMA, 3 EMA - 3 EMA(EMA) + EMA(EMA(EMA)); NaN for the first
    ``3 * (timeperiod - 1)``."""
    bound = TEMA.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _tema(x, bound["timeperiod"], tail)
    return out


TEMA = Indicator(
    name="tema",
    step=tema_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(low=1),),
    batch=tema,
    lookback=lambda timeperiod: 3 * (timeperiod - 1),
    width=lambda timeperiod: 6,
    init=_ema_init,
)


# --- KAMA ------------------------------------------------------------------------------------
# As TA-Lib's installed build computes it (newer than ta_KAMA.c): the efficiency ratio is 1 when
# the path is not positive and is capped at 1, and once the last ``timeperiod`` 1-bar moves are
# all exactly 0 the running path is reset to 0 rather than left with its rounding residue.
_SLOW = 2.0 / (30.0 + 1.0)  # TA-Lib's fixed slow and fast EMA factors
_FAST_MINUS_SLOW = 2.0 / (2.0 + 1.0) - _SLOW


@step
def _kama_factor(change, path):
    """The EMA factor: the efficiency ratio ``|change| / path`` (net move over the window against
    the sum of its 1-bar moves) placed between the slow and the fast factor, squared."""
    ratio = abs(change / path)  # inf or NaN for a zero path, then replaced: no branch
    ratio = 1.0 if (path <= 0.0) | (change >= path) | (ratio > 1.0) else ratio
    factor = ratio * _FAST_MINUS_SLOW + _SLOW
    return factor * factor


@kernel
def _kama(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    lookback = n if n > 1 else 0
    out[: min(lookback, size)] = NAN
    if size <= lookback:
        return
    if n == 1:
        copy(real, out)  # TA-Lib copies the input
        return
    path = 0.0
    flat = 0  # how many of the latest 1-bar moves are exactly 0
    for i in range(1, n + 1):
        move = real[i] - real[i - 1]
        path += abs(move)
        flat = flat + 1 if move == 0.0 else 0
    value = ema_next(real[n - 1], real[n], _kama_factor(real[n] - real[0], path))
    out[n] = value
    # views offset by n keep every index non-negative: numba then drops its wraparound code
    ahead = real[n:]
    dest = out[n:]
    last = ahead[0]
    old = real[0]
    for j in range(1, size - n):
        prefetch(ahead, j + AHEAD)
        x = ahead[j]
        trailing = real[j]
        move = x - last
        # Branches, as TA-Lib's build has them: a zero move, a non-positive path and a ratio
        # past 1 are rare, so they are predicted, and the usual bar runs about 10 instructions
        # fewer than the selects of _kama_factor (KAMA was 1.15x TA-Lib branch-free, ~1.0x so).
        if move == 0.0 and flat + 1 >= n:
            flat = n
            path = 0.0
            ratio = 1.0
        else:
            flat = flat + 1 if move == 0.0 else 0
            path = (path - abs(old - trailing)) + abs(move)
            change = x - trailing  # a NaN ratio stays NaN (min keeps it), as in _kama_factor
            ratio = 1.0 if path <= 0.0 or change >= path else min(abs(change / path), 1.0)
        factor = ratio * _FAST_MINUS_SLOW + _SLOW
        value = ema_next(value, x, factor * factor)
        dest[j] = value
        last = x
        old = trailing


@step
def kama_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, path, KAMA, flat moves, ring[timeperiod + 1] of inputs
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    n = int(st[b + 1])
    if n == 1:
        out[o] = close
        return
    ring = b + 5
    size = n + 1
    i = int(count) - 1
    out[o] = NAN
    if i > 0:
        last = st[ring + (i - 1) % size]
        trailing = st[ring + (i + 1) % size]  # the input n bars back
        move = close - last
        flat = min(st[b + 4] + 1.0, n) if move == 0.0 else 0.0
        st[b + 4] = flat
        if i <= n:
            path = st[b + 2] + abs(move)
            if i == n:  # the first value starts from the previous input
                st[b + 3] = ema_next(last, close, _kama_factor(close - trailing, path))
                out[o] = st[b + 3]
        else:
            if flat == n:
                path = 0.0
            else:
                path = st[b + 2] - abs(st[ring + i % size] - trailing)
                path += abs(move)
            st[b + 3] = ema_next(st[b + 3], close, _kama_factor(close - trailing, path))
            out[o] = st[b + 3]
        st[b + 2] = path
    st[ring + i % size] = close


def kama(real, timeperiod=30):
    """Kaufman adaptive moving average, TA-Lib's (EMA factors 2/3 fast, 2/31 slow, no unstable
    period); NaN for the first ``timeperiod`` (none for ``timeperiod=1``: a copy of the input)."""
    bound = KAMA.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _kama(x, bound["timeperiod"], tail)
    return out


KAMA = Indicator(
    name="kama",
    step=kama_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(low=1),),
    batch=kama,
    lookback=lambda timeperiod: timeperiod if timeperiod > 1 else 0,
    width=lambda timeperiod: 6 + timeperiod,
)


INDICATORS = (SMA, EMA, WMA, DEMA, TEMA, KAMA)
