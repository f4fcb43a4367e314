"""Volatility: STDDEV, BBANDS, TRANGE, ATR, NATR (TA-Lib's definitions) and rolling ZSCORE.

The rolling deviation follows the TA-Lib the ta-lib wheel bundles (its ``var.c`` since issues #118
and #243), not the classic naive sums: the running sums hold deviations from a ``shift`` near the
window, so the variance does not cancel at high price levels, and when they lose too many digits,
or every ``32 * timeperiod`` bars, TA-Lib re-anchors the shift at the window mean and rebuilds the
sums in a second pass (:func:`var_window`, :func:`var_reseed`: on the input itself in batch, on a
ring of the last ``timeperiod`` values in streaming). That re-anchoring floors the variance at 0
relative to the window's scale; the fixed epsilon (``TA_IS_ZERO_OR_NEG``) that older TA-Lib
compared it with is gone, so the square root is unconditional here as there. A NaN input poisons
the sums until the next scheduled re-anchoring finds a window without it, as in TA-Lib.
"""

from __future__ import annotations

import math

import numpy as np

from tickd.strategies.indicators import inputs
from tickd.strategies.indicators.catalog import Indicator, Param, matype, period
from tickd.strategies.indicators.jit import kernel, step
from tickd.strategies.indicators.primitives import AHEAD, fma, mul, prefetch, prefetch3

NAN = np.nan
TA_REAL = 3e37  # TA-Lib's TA_REAL_MIN/TA_REAL_MAX magnitude for real parameters
_BLOCK = 512  # rows a batch kernel takes through its two loops at a time (they stay in L1)

# Streaming layout shared by STDDEV, BBANDS and ZSCORE after their parameters (the "window"
# block at st[v:]): 1/timeperiod, shift, sum of deviations, sum of squared deviations, bars until
# the scheduled re-anchoring, plain running sum (the SMA), the ring slot the next value goes to
# (which holds the oldest value once the ring is full), then the ring of the last values.
_INV, _SHIFT, _DEV1, _DEV2, _RESEED, _TOTAL, _SLOT, _RING = range(8)


# --- rolling variance (TA-Lib's shifted sums) ------------------------------------------------
@step
def var_push(x, shift, dev1, dev2):
    """Add ``x`` to the sums of deviations from ``shift`` and of their squares."""
    t = x - shift
    return dev1 + t, dev2 + mul(t, t)


@step
def var_reseed(buf, lo, k, n, inv):
    """TA-Lib's re-anchoring: shift at the window mean, sums rebuilt, variance floored at 0.

    The window is ``buf[lo + k:lo + n]`` then ``buf[lo:lo + k]``, oldest first (``k = 0`` for a
    plain slice, the ring's oldest slot in streaming). Returns the new shift, the sums with the
    oldest value already removed (as the caller's next window expects) and the variance.
    """
    total = 0.0
    for j in range(lo + k, lo + n):
        total += buf[j]
    for j in range(lo, lo + k):
        total += buf[j]
    shift = total * inv
    dev1 = 0.0
    dev2 = 0.0
    for j in range(lo + k, lo + n):
        dev1, dev2 = var_push(buf[j], shift, dev1, dev2)
    for j in range(lo, lo + k):
        dev1, dev2 = var_push(buf[j], shift, dev1, dev2)
    mean = dev1 * inv
    scale = mul(dev2, inv)
    variance = scale - mul(mean, mean)
    if variance < 1e-12 * scale:
        variance = 0.0  # no spread the shift can resolve: the digits left are noise
    t = buf[lo + k] - shift
    return shift, dev1 - t, dev2 - mul(t, t), variance


@step
def var_window(x, old, shift, dev1, dev2, inv):
    """One window of TA-Lib's variance: add ``x``, read the variance, remove the oldest value
    ``old``. Returns (dev1, dev2, variance, stale): when ``stale`` (the sums lost too many digits,
    or an outlier just left the window) or its scheduled count runs out, the caller, which holds
    the window, calls :func:`var_reseed` as TA-Lib does."""
    dev1, dev2 = var_push(x, shift, dev1, dev2)
    mean = dev1 * inv
    variance = mul(dev2, inv) - mul(mean, mean)
    t = old - shift
    dev1 -= t
    sq = mul(t, t)
    dev2 -= sq
    return dev1, dev2, variance, variance < 1e-6 * (dev2 * inv) or sq > 1e6 * dev2


@step
def window_start(real, n):
    """The sums over the first ``n - 1`` values, as TA-Lib starts them, shifted by the first:
    the state :func:`window_block` carries (shift, running sum, dev1, dev2, bars to re-anchoring).
    """
    shift = real[0]
    total = 0.0
    dev1 = 0.0
    dev2 = 0.0
    for i in range(n - 1):
        total += real[i]
        dev1, dev2 = var_push(real[i], shift, dev1, dev2)
    return shift, total, dev1, dev2, 32 * n


@step
def window_block(real, n, start, sums, variances, state):
    """The windows whose oldest rows are ``start``, ``start + 1``, ... (as many as
    ``variances`` holds): the running sum, before its oldest value leaves, into ``sums`` (none
    kept for ``sums=None``: numba compiles that case without the sum, 7 % of STDDEV's time) and
    TA-Lib's variance into ``variances``. Returns the carried state.

    Batch kernels run this over blocks that stay in cache, then compute their outputs from the
    block in a second loop: free of the sums' dependency chain, the divisions and square roots
    there vectorize."""
    shift, total, dev1, dev2, reseed = state
    inv = 1.0 / n
    new = real[n - 1 + start :]
    old = real[start:]
    for j in range(variances.shape[0]):
        prefetch(new, j + AHEAD)
        x = new[j]
        if sums is not None:
            total += x
            sums[j] = total
            total -= old[j]
        dev1, dev2, variance, stale = var_window(x, old[j], shift, dev1, dev2, inv)
        reseed -= 1
        if stale or reseed <= 0:
            reseed = 32 * n
            shift, dev1, dev2, variance = var_reseed(real, start + j, 0, n, inv)
        variances[j] = variance
    return shift, total, dev1, dev2, reseed


@step
def window_step(st, v, n, count, x):
    """Streaming form of the window: push ``x`` (the ``count``-th value) into the block at
    ``st[v:]``; returns (running sum before removing the oldest, variance), NaN in warm-up."""
    ring = v + _RING
    slot = int(st[v + _SLOT])
    st[ring + slot] = x
    k = slot + 1 if slot + 1 < n else 0  # the oldest value's slot, and the next one to write
    st[v + _SLOT] = k
    if count == 1:
        st[v + _SHIFT] = x
    total = st[v + _TOTAL] + x
    if count < n:
        st[v + _TOTAL] = total
        st[v + _DEV1], st[v + _DEV2] = var_push(x, st[v + _SHIFT], st[v + _DEV1], st[v + _DEV2])
        return NAN, NAN
    inv = st[v + _INV]
    shift = st[v + _SHIFT]
    st[v + _TOTAL] = total - st[ring + k]
    dev1, dev2, variance, stale = var_window(
        x, st[ring + k], shift, st[v + _DEV1], st[v + _DEV2], inv
    )
    reseed = st[v + _RESEED] - 1.0
    if stale or reseed <= 0.0:
        reseed = 32.0 * n
        shift, dev1, dev2, variance = var_reseed(st, ring, k, n, inv)
    st[v + _SHIFT] = shift
    st[v + _DEV1] = dev1
    st[v + _DEV2] = dev2
    st[v + _RESEED] = reseed
    return total, variance


def _window_init(state, v, timeperiod):
    state[v + _INV] = 1.0 / timeperiod
    state[v + _RESEED] = 32 * timeperiod


# --- STDDEV ----------------------------------------------------------------------------------
@kernel
def _stddev(real, timeperiod, nbdev, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n - 1, size)] = NAN
    if size < n:
        return
    state = window_start(real, n)
    out = out[n - 1 :]
    for start in range(0, out.shape[0], _BLOCK):
        block = out[start : start + _BLOCK]
        state = window_block(real, n, start, None, block, state)
        for j in range(block.shape[0]):
            block[j] = math.sqrt(block[j]) * nbdev


@step
def stddev_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, nbdev, window block (see _RING)
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = int(st[b]) + 1
    st[b] = count
    _, variance = window_step(st, b + 3, int(st[b + 1]), count, close)
    out[o] = math.sqrt(variance) * st[b + 2]


def _stddev_init(state, base, timeperiod, nbdev):
    state[base + 1] = timeperiod
    state[base + 2] = nbdev
    _window_init(state, base + 3, timeperiod)


def stddev(real, timeperiod=5, nbdev=1.0):
    """Population standard deviation over ``timeperiod`` values times ``nbdev``; NaN for the
    first ``timeperiod - 1``."""
    bound = STDDEV.bind(timeperiod=timeperiod, nbdev=nbdev)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _stddev(x, bound["timeperiod"], bound["nbdev"], tail)
    return out


STDDEV = Indicator(
    name="stddev",
    step=stddev_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(default=5), Param("nbdev", 1.0, -TA_REAL, TA_REAL, integer=False)),
    batch=stddev,
    lookback=lambda timeperiod, nbdev: timeperiod - 1,
    width=lambda timeperiod, nbdev: 3 + _RING + timeperiod,
    init=_stddev_init,
)


# --- BBANDS ----------------------------------------------------------------------------------
@step
def bands(middle, deviation, nbdevup, nbdevdn):
    """Upper and lower band as TA-Lib's build rounds them: with one width both are
    ``middle ± deviation * nbdev`` from a single rounded product; with two, the upper band is one
    multiply-add and the lower one a rounded product then a subtraction."""
    if nbdevup == nbdevdn:
        width = mul(deviation, nbdevup)
        return middle + width, middle - width
    return fma(deviation, nbdevup, middle), middle - mul(deviation, nbdevdn)


@step
def bands_block(n, nbdevup, nbdevdn, upper, middle, lower):
    """The bands from running sums in ``middle`` and variances in ``upper``, in place."""
    if nbdevup == nbdevdn:  # tested once a block, so that each loop vectorizes
        for j in range(middle.shape[0]):
            mid = middle[j] / n
            middle[j] = mid
            upper[j], lower[j] = bands(mid, math.sqrt(upper[j]), nbdevup, nbdevup)
    else:
        for j in range(middle.shape[0]):
            mid = middle[j] / n
            middle[j] = mid
            upper[j], lower[j] = bands(mid, math.sqrt(upper[j]), nbdevup, nbdevdn)


@kernel
def _bbands(real, timeperiod, nbdevup, nbdevdn, upper, middle, lower):
    n = timeperiod
    size = real.shape[0]
    warm = min(n - 1, size)
    upper[:warm] = NAN
    middle[:warm] = NAN
    lower[:warm] = NAN
    if size < n:
        return
    state = window_start(real, n)
    upper = upper[n - 1 :]
    middle = middle[n - 1 :]
    lower = lower[n - 1 :]
    for start in range(0, middle.shape[0], _BLOCK):
        stop = start + _BLOCK
        state = window_block(real, n, start, middle[start:stop], upper[start:stop], state)
        bands_block(n, nbdevup, nbdevdn, upper[start:stop], middle[start:stop], lower[start:stop])


@step
def bbands_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, nbdevup, nbdevdn, matype, window block (see _RING)
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        out[o + 1] = NAN
        out[o + 2] = NAN
        return
    count = int(st[b]) + 1
    st[b] = count
    n = int(st[b + 1])
    total, variance = window_step(st, b + 5, n, count, close)
    mid = total / n
    out[o], out[o + 2] = bands(mid, math.sqrt(variance), st[b + 2], st[b + 3])
    out[o + 1] = mid


def _bbands_init(state, base, timeperiod, nbdevup, nbdevdn, matype):
    state[base + 1 : base + 5] = timeperiod, nbdevup, nbdevdn, matype
    _window_init(state, base + 5, timeperiod)


def bbands(real, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0):
    """Bollinger Bands: (upperband, middleband, lowerband) = SMA ± nbdev * population standard
    deviation over ``timeperiod`` values; NaN for the first ``timeperiod - 1``."""
    bound = BBANDS.bind(timeperiod=timeperiod, nbdevup=nbdevup, nbdevdn=nbdevdn, matype=matype)
    (x,), outs, tails = inputs.prepare(("real",), real, outputs=3)
    _bbands(x, bound["timeperiod"], bound["nbdevup"], bound["nbdevdn"], *tails)
    return outs


BBANDS = Indicator(
    name="bbands",
    step=bbands_step,
    inputs=("close",),
    outputs=("upperband", "middleband", "lowerband"),
    params=(
        period(default=20),
        Param("nbdevup", 2.0, -TA_REAL, TA_REAL, integer=False),
        Param("nbdevdn", 2.0, -TA_REAL, TA_REAL, integer=False),
        matype(),
    ),
    batch=bbands,
    lookback=lambda timeperiod, nbdevup, nbdevdn, matype: timeperiod - 1,
    width=lambda timeperiod, nbdevup, nbdevdn, matype: 5 + _RING + timeperiod,
    init=_bbands_init,
)


# --- ZSCORE ----------------------------------------------------------------------------------
@step
def zscore_value(x, total, n, variance):
    """(x - mean) / stddev, NaN where the deviation is 0."""
    deviation = math.sqrt(variance)
    return (x - total / n) / deviation if deviation != 0.0 else NAN


@kernel
def _zscore(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n - 1, size)] = NAN
    if size < n:
        return
    state = window_start(real, n)
    new = real[n - 1 :]
    out = out[n - 1 :]
    scratch = np.empty(_BLOCK)
    for start in range(0, out.shape[0], _BLOCK):
        sums = out[start : start + _BLOCK]
        variances = scratch[: sums.shape[0]]
        state = window_block(real, n, start, sums, variances, state)
        x = new[start:]
        for j in range(sums.shape[0]):
            sums[j] = zscore_value(x[j], sums[j], n, variances[j])


@step
def zscore_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, window block (see _RING)
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = int(st[b]) + 1
    st[b] = count
    n = int(st[b + 1])
    total, variance = window_step(st, b + 2, n, count, close)
    out[o] = zscore_value(close, total, n, variance)


def _zscore_init(state, base, timeperiod):
    state[base + 1] = timeperiod
    _window_init(state, base + 2, timeperiod)


def zscore(real, timeperiod=20):
    """Rolling z-score: (real - mean) / stddev over the last ``timeperiod`` values (TA-Lib has
    none). The mean is TA-Lib's SMA and the deviation TA-Lib's population STDDEV(nbdev=1), bit
    for bit, so ``zscore == (real - SMA) / STDDEV``; NaN where the deviation is 0 and for the first
    ``timeperiod - 1``."""
    bound = ZSCORE.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _zscore(x, bound["timeperiod"], tail)
    return out


ZSCORE = Indicator(
    name="zscore",
    step=zscore_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(default=20),),
    batch=zscore,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 2 + _RING + timeperiod,
    init=_zscore_init,
)


# --- TRANGE, ATR, NATR -----------------------------------------------------------------------
@step
def true_range(high, low, prev_close):
    """The greatest of high - low, |prev_close - high| and |prev_close - low|, compared in
    TA-Lib's order (so a NaN previous close falls back to high - low, as there)."""
    greatest = high - low
    up = abs(prev_close - high)
    greatest = up if up > greatest else greatest
    down = abs(prev_close - low)
    return down if down > greatest else greatest


@kernel
def _trange(high, low, close, out):
    size = high.shape[0]
    out[: min(1, size)] = NAN
    for i in range(1, size):
        out[i] = true_range(high[i], low[i], close[i - 1])


@step
def trange_step(st, b, high, low, close, volume, session, out, o):
    # state: count, previous close
    if st[b] == 0.0 and (np.isnan(high) or np.isnan(low) or np.isnan(close)):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    count = st[b] + 1.0
    st[b] = count
    out[o] = NAN if count == 1.0 else true_range(high, low, st[b + 1])
    st[b + 1] = close


def trange(high, low, close):
    """True range: the greatest of high - low and the distances from the previous close to
    high and low; NaN for the first bar."""
    (h, lo, c), (out,), (tail,) = inputs.prepare(("high", "low", "close"), high, low, close)
    _trange(h, lo, c, tail)
    return out


TRANGE = Indicator(
    name="trange",
    step=trange_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(),
    batch=trange,
    lookback=lambda: 1,
    width=lambda: 2,
)


@step
def wilder_next(prev, x, alpha, beta):
    """One Wilder step as TA-Lib writes it, alpha * x + beta * prev with beta = (n - 1) / n and
    alpha = 1 - beta, rounded as its build does: the second product fused into the sum."""
    return fma(beta, prev, alpha * x)


@step
def natr_value(atr, close, n):
    """ATR as a percentage of the close; period 1 is the raw true range, as in TA-Lib."""
    if n <= 1:
        return atr
    return (atr / close) * 100.0 if close != 0.0 else 0.0


@kernel
def _atr(high, low, close, timeperiod, normalize, out):
    n = timeperiod
    size = high.shape[0]
    out[: min(n, size)] = NAN
    if size <= n:
        return
    beta = (n - 1) / n
    alpha = 1.0 - beta
    total = 0.0
    prev_close = close[0]
    for i in range(1, n + 1):
        total += true_range(high[i], low[i], prev_close)
        prev_close = close[i]
    atr = total / n
    # views from row n + 1 so that the loops index from 0: no negative-index checks
    high = high[n + 1 :]
    low = low[n + 1 :]
    close = close[n + 1 :]
    if normalize and n > 1:  # NATR of period 1 is the true range: the loop below
        out[n] = natr_value(atr, prev_close, n)
        out = out[n + 1 :]
        for i in range(size - n - 1):
            prefetch3(high, low, close, i + AHEAD)
            atr = wilder_next(atr, true_range(high[i], low[i], prev_close), alpha, beta)
            prev_close = close[i]
            # A branch, as in TA-Lib's build (a zero close is rare, so predicted): the select
            # of natr_value made NATR 1.16x TA-Lib, this ~1.05x.
            if prev_close != 0.0:
                out[i] = (atr / prev_close) * 100.0
            else:
                out[i] = 0.0
    else:
        out[n] = atr
        out = out[n + 1 :]
        for i in range(size - n - 1):
            prefetch3(high, low, close, i + AHEAD)
            atr = wilder_next(atr, true_range(high[i], low[i], prev_close), alpha, beta)
            prev_close = close[i]
            out[i] = atr


@step
def atr_update(st, b, high, low, close):
    """The ATR after this bar (NaN in warm-up); state: count, timeperiod, alpha, beta, previous
    close, running true-range total then the ATR."""
    count = st[b] + 1.0
    st[b] = count
    n = st[b + 1]
    value = NAN
    if count > 1.0:
        tr = true_range(high, low, st[b + 4])
        if count <= n:
            st[b + 5] += tr
        elif count == n + 1.0:
            value = (st[b + 5] + tr) / n
        else:
            value = wilder_next(st[b + 5], tr, st[b + 2], st[b + 3])
        if count > n:
            st[b + 5] = value
    st[b + 4] = close
    return value


@step
def atr_step(st, b, high, low, close, volume, session, out, o):
    if st[b] == 0.0 and (np.isnan(high) or np.isnan(low) or np.isnan(close)):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    out[o] = atr_update(st, b, high, low, close)


@step
def natr_step(st, b, high, low, close, volume, session, out, o):
    if st[b] == 0.0 and (np.isnan(high) or np.isnan(low) or np.isnan(close)):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    value = atr_update(st, b, high, low, close)
    n = st[b + 1]
    out[o] = natr_value(value, close, n) if st[b] > n else NAN


def _atr_init(state, base, timeperiod):
    beta = (timeperiod - 1) / timeperiod
    state[base + 1 : base + 4] = timeperiod, 1.0 - beta, beta


def _atr_batch(ind, high, low, close, timeperiod, normalize):
    bound = ind.bind(timeperiod=timeperiod)
    (h, lo, c), (out,), (tail,) = inputs.prepare(("high", "low", "close"), high, low, close)
    _atr(h, lo, c, bound["timeperiod"], normalize, tail)
    return out


def atr(high, low, close, timeperiod=14):
    """Average true range: Wilder's smoothing of the true range, seeded with the mean of the
    first ``timeperiod`` true ranges; NaN for the first ``timeperiod`` bars (period 1 is the
    true range)."""
    return _atr_batch(ATR, high, low, close, timeperiod, False)


def natr(high, low, close, timeperiod=14):
    """Normalized ATR: 100 * ATR / close (0 where the close is 0; period 1 is the raw true
    range, as in TA-Lib); NaN for the first ``timeperiod`` bars."""
    return _atr_batch(NATR, high, low, close, timeperiod, True)


ATR = Indicator(
    name="atr",
    step=atr_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(period(default=14, low=1),),
    batch=atr,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 6,
    init=_atr_init,
)

NATR = Indicator(
    name="natr",
    step=natr_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(period(default=14, low=1),),
    batch=natr,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 6,
    init=_atr_init,
)


INDICATORS = (STDDEV, BBANDS, TRANGE, ATR, NATR, ZSCORE)
