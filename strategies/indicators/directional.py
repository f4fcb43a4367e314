"""Directional movement: ADX, PLUS_DI, MINUS_DI (TA-Lib's definitions and warm-up).

Wilder's smoothing is seeded with the sum of the first ``timeperiod - 1`` one-bar values and then
``x - x / timeperiod + x1``, in TA-Lib's order. As in the TA-Lib build the ``ta-lib`` wheel
bundles (read from its machine code): a DI is 0 unless the smoothed true range is > 0 (so a NaN
range gives 0), ADX skips a bar whose true range is not > 0 or whose DI sum is zero within 1e-14,
and no product is fused into an add (see :func:`.primitives.rounded`).
"""

from __future__ import annotations

import numpy as np

from tickd.strategies.indicators import inputs
from tickd.strategies.indicators.catalog import Indicator, period
from tickd.strategies.indicators.jit import kernel, lane_kernel, step
from tickd.strategies.indicators.primitives import (
    AHEAD,
    at,
    prefetch3,
    put,
    rounded,
    skip_leading_nan,
)

NAN = np.nan


# --- shared maths ----------------------------------------------------------------------------
@step
def directional_movement(high, low, prev_high, prev_low):
    """One bar's (+DM, -DM): the larger move outside the previous bar's range if it is positive,
    the other 0 (both 0 on a tie or NaN)."""
    up = high - prev_high
    down = prev_low - low
    # "up > 0 and up > down" as one compare (so a select, not a branch): a NaN down stays NaN
    # in the bound, and the compare is false for it as for a NaN up.
    plus = up if up > (0.0 if down < 0.0 else down) else 0.0
    minus = down if down > (0.0 if up < 0.0 else up) else 0.0
    return plus, minus


@step
def true_range(high, low, prev_close):
    """The largest of high - low, |high - prev_close| and |low - prev_close|, compared in
    TA-Lib's order (a NaN high - low stays NaN)."""
    tr = high - low
    x = abs(high - prev_close)
    if x > tr:
        tr = x
    x = abs(low - prev_close)
    if x > tr:
        tr = x
    return tr


@step
def wilder(prev, x, n):
    """Wilder's smoothing of a running sum over ``n`` bars."""
    return prev - prev / n + x


@step
def directional_index(dm, tr):
    """A smoothed DI in percent, 0 unless the smoothed true range is > 0."""
    return 100.0 * (dm / tr) if tr > 0.0 else 0.0


@step
def directional_index_1(dm1, tr1):
    """TA-Lib's DI for a period of 1: the ratio (not in percent), 0 without movement or range."""
    return dm1 / tr1 if dm1 > 0.0 and not tr1 <= 0.0 else 0.0


@step
def dx(plus_dm, minus_dm, tr):
    """Wilder's DX from smoothed movements and range, and whether the bar has one (TA-Lib skips
    a bar whose true range is not > 0 or whose DI sum is zero within 1e-14)."""
    minus_di = rounded(100.0 * (minus_dm / tr))
    plus_di = rounded(100.0 * (plus_dm / tr))
    total = minus_di + plus_di
    value = rounded(100.0 * (abs(minus_di - plus_di) / total))
    # & rather than and: no branch, so that four bars' DX vectorize (see _adx)
    return value, (tr > 0.0) & (not ((total > -1e-14) & (total < 1e-14)))


@step
def _bar(high, low, close, i):
    """Bar ``i``'s (+DM, -DM, TR) against bar ``i - 1``."""
    h = at(high, i)
    lo = at(low, i)
    up, down = directional_movement(h, lo, at(high, i - 1), at(low, i - 1))
    return up, down, true_range(h, lo, at(close, i - 1))


@step
def _skip_or_count(st, b, high, low, close, out, o):
    """Count the update and return its 1-based number; 0 (output NaN) for a leading NaN and for
    the first bar, which only sets the previous prices."""
    if skip_leading_nan(st, b, high, low, close, out, o, 1):
        return 0
    count = st[b] + 1.0
    st[b] = count
    if count == 1.0:
        st[b + 2] = high
        st[b + 3] = low
        st[b + 4] = close
        out[o] = NAN
        return 0
    return int(count)


# --- ADX -------------------------------------------------------------------------------------
@lane_kernel
def _adx(high, low, close, timeperiod, out):
    n = timeperiod
    size = high.shape[0]
    lookback = 2 * n - 1
    out[: min(lookback, size)] = NAN
    if size <= lookback:
        return
    plus = minus = tr = 0.0
    for i in range(1, n):
        up, down, tr1 = _bar(high, low, close, i)
        plus += up
        minus += down
        tr += tr1
    total = 0.0
    for i in range(n, lookback + 1):
        up, down, tr1 = _bar(high, low, close, i)
        plus = wilder(plus, up, n)
        minus = wilder(minus, down, n)
        tr = wilder(tr, tr1, n)
        value, ok = dx(plus, minus, tr)
        total = total + value if ok else total
    adx = total / n
    put(out, lookback, adx)
    # Four bars a step: their Wilder sums and ADX stay serial, but their DX are independent, so
    # the SLP vectorizer (lane_kernel) puts each of DX's three divisions for the four bars into
    # one vector division, which overlaps the serial ones (9.2 -> 7.4 ns a bar).
    sums = (plus, minus, tr)
    i = lookback + 1
    while i + 3 < size:
        prefetch3(high, low, close, i + AHEAD)
        s0 = _wilder3(sums, _bar(high, low, close, i), n)
        s1 = _wilder3(s0, _bar(high, low, close, i + 1), n)
        s2 = _wilder3(s1, _bar(high, low, close, i + 2), n)
        sums = _wilder3(s2, _bar(high, low, close, i + 3), n)
        d0, d1, d2, d3 = dx(*s0), dx(*s1), dx(*s2), dx(*sums)
        adx = _adx_next(adx, d0, n)
        put(out, i, adx)
        adx = _adx_next(adx, d1, n)
        put(out, i + 1, adx)
        adx = _adx_next(adx, d2, n)
        put(out, i + 2, adx)
        adx = _adx_next(adx, d3, n)
        put(out, i + 3, adx)
        i += 4
    for j in range(i, size):
        sums = _wilder3(sums, _bar(high, low, close, j), n)
        adx = _adx_next(adx, dx(*sums), n)
        put(out, j, adx)


@step
def _wilder3(sums, bar, n):
    """Wilder's smoothing of (+DM, -DM, TR) sums with one bar's values."""
    return wilder(sums[0], bar[0], n), wilder(sums[1], bar[1], n), wilder(sums[2], bar[2], n)


@step
def _adx_next(adx, dx_ok, n):
    """Wilder's smoothing of the ADX with a bar's (DX, whether it has one)."""
    value, ok = dx_ok
    return (rounded(adx * (n - 1.0)) + value) / n if ok else adx


@step
def adx_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, previous high, low, close, +DM, -DM, TR, DX sum then ADX
    count = _skip_or_count(st, b, high, low, close, out, o)
    if count == 0:
        return
    n = st[b + 1]
    up, down = directional_movement(high, low, st[b + 2], st[b + 3])
    tr1 = true_range(high, low, st[b + 4])
    st[b + 2] = high
    st[b + 3] = low
    st[b + 4] = close
    out[o] = NAN
    if count <= n:
        st[b + 5] += up
        st[b + 6] += down
        st[b + 7] += tr1
        return
    plus = wilder(st[b + 5], up, n)
    minus = wilder(st[b + 6], down, n)
    tr = wilder(st[b + 7], tr1, n)
    st[b + 5] = plus
    st[b + 6] = minus
    st[b + 7] = tr
    value, ok = dx(plus, minus, tr)
    total = st[b + 8]
    if count > 2.0 * n:
        if ok:
            total = (rounded(total * (n - 1.0)) + value) / n
        out[o] = total
    else:
        if ok:
            total += value
        if count == 2.0 * n:
            total /= n
            out[o] = total
    st[b + 8] = total


def adx(high, low, close, timeperiod=14):
    """Average directional movement index (Wilder); NaN for the first ``2 * timeperiod - 1``
    rows."""
    p = ADX.bind(timeperiod=timeperiod)
    (h, lo, c), (out,), (tail,) = inputs.prepare(("high", "low", "close"), high, low, close)
    _adx(h, lo, c, p["timeperiod"], tail)
    return out


ADX = Indicator(
    name="adx",
    step=adx_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(period(default=14),),
    batch=adx,
    lookback=lambda timeperiod: 2 * timeperiod - 1,
    width=lambda timeperiod: 9,
)


# --- PLUS_DI / MINUS_DI ----------------------------------------------------------------------
@kernel
def _di(high, low, close, timeperiod, minus, out):
    # One kernel for both sides: ``minus`` picks -DM over +DM.
    n = timeperiod
    size = high.shape[0]
    lookback = max(n, 1)
    out[: min(lookback, size)] = NAN
    if size <= lookback:
        return
    if n == 1:
        for i in range(1, size):
            up, down, tr1 = _bar(high, low, close, i)
            put(out, i, directional_index_1(down if minus else up, tr1))
        return
    dm = tr = 0.0
    for i in range(1, n):
        up, down, tr1 = _bar(high, low, close, i)
        dm += down if minus else up
        tr += tr1
    for i in range(n, size):
        prefetch3(high, low, close, i + AHEAD)
        up, down, tr1 = _bar(high, low, close, i)
        dm = wilder(dm, down if minus else up, n)
        tr = wilder(tr, tr1, n)
        put(out, i, directional_index(dm, tr))


@step
def _di_step(st, b, high, low, close, out, o, minus):
    # state: count, timeperiod, previous high, low, close, DM, TR
    count = _skip_or_count(st, b, high, low, close, out, o)
    if count == 0:
        return
    n = st[b + 1]
    up, down = directional_movement(high, low, st[b + 2], st[b + 3])
    dm1 = down if minus else up
    tr1 = true_range(high, low, st[b + 4])
    st[b + 2] = high
    st[b + 3] = low
    st[b + 4] = close
    if n == 1.0:
        out[o] = directional_index_1(dm1, tr1)
    elif count <= n:
        st[b + 5] += dm1
        st[b + 6] += tr1
        out[o] = NAN
    else:
        dm = wilder(st[b + 5], dm1, n)
        tr = wilder(st[b + 6], tr1, n)
        st[b + 5] = dm
        st[b + 6] = tr
        out[o] = directional_index(dm, tr)


@step
def plus_di_step(st, b, high, low, close, volume, session, out, o):
    _di_step(st, b, high, low, close, out, o, False)


@step
def minus_di_step(st, b, high, low, close, volume, session, out, o):
    _di_step(st, b, high, low, close, out, o, True)


def _di_batch(ind, high, low, close, timeperiod):
    p = ind.bind(timeperiod=timeperiod)
    (h, lo, c), (out,), (tail,) = inputs.prepare(("high", "low", "close"), high, low, close)
    _di(h, lo, c, p["timeperiod"], ind is MINUS_DI, tail)
    return out


def plus_di(high, low, close, timeperiod=14):
    """Plus directional indicator: Wilder-smoothed +DM over true range, in percent (for a period
    of 1, TA-Lib's plain ratio); NaN for the first ``timeperiod`` rows."""
    return _di_batch(PLUS_DI, high, low, close, timeperiod)


def minus_di(high, low, close, timeperiod=14):
    """Minus directional indicator, as :func:`plus_di` with -DM."""
    return _di_batch(MINUS_DI, high, low, close, timeperiod)


PLUS_DI = Indicator(
    name="plus_di",
    step=plus_di_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(period(default=14, low=1),),
    batch=plus_di,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 7,
)

MINUS_DI = Indicator(
    name="minus_di",
    step=minus_di_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(period(default=14, low=1),),
    batch=minus_di,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 7,
)


INDICATORS = (ADX, PLUS_DI, MINUS_DI)
