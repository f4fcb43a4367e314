"""Momentum: RSI, MACD, ROC, MOM, CCI, ULTOSC, MFI (TA-Lib's definitions and warm-up).

Each indicator comes in three forms sharing one definition of the maths: the batch kernel
(``_rsi``), the streaming step (``rsi_step``, see :mod:`.catalog` for the state layout) and the
bank, which compiles the steps of its indicators into one loop. They follow the TA-Lib that the
ta-lib wheel bundles, as compiled: sums in its order (CCI even sums its ring in slot order, not
time order), its dead zones, its reseeding of empty windows, and FMA only where its build has an
FMA variant (MACD here), so results match it bit for bit, NaN included.
"""

from __future__ import annotations

import numpy as np

from tickd.strategies.indicators import inputs
from tickd.strategies.indicators.averages import ema_next
from tickd.strategies.indicators.catalog import Indicator, period
from tickd.strategies.indicators.jit import kernel, lane_kernel, step
from tickd.strategies.indicators.primitives import AHEAD, at, fence, mul, prefetch

NAN = np.nan
#: TA-Lib's ``TA_EPSILON``: its dead zones are this fraction of the operands' size.
EPSILON = 1e-14

U0 = np.uint64(0)
U1 = np.uint64(1)
#: Bars per block where a kernel splits a serial chain from vectorizable work.
BLOCK = 256


@step
def _ring_next(slot, last):
    """The ring slot after ``slot`` in a ring whose last slot is ``last``. Both are unsigned, so
    numba skips its negative-index fix-up (three instructions per access in a hot loop)."""
    return slot + U1 if slot < last else U0


# --- RSI -------------------------------------------------------------------------------------
@step
def _wilder(average, move, n1, recip):
    """One Wilder smoothing step, (average * (n - 1) + move) * (1 / n), as TA-Lib computes it
    (its RSI has no FMA build, so the product is rounded before the add). The result is rounded
    on its own too: the last step's, used only by the RSI's sum, was fused into that sum (one
    ULP off TA-Lib in the last value of about 7 % of short series)."""
    return mul(fence(average * n1) + move, recip)


@step
def _moves(diff):
    """The gain and the loss of one change; TA-Lib counts a NaN change as a NaN loss."""
    up = diff if diff > 0.0 else 0.0
    return up, up - diff


@step
def _rsi_value(gain, loss):
    """100 * gain / (gain + loss), or 0 unless the sum is positive (so 0 for NaN too)."""
    total = loss + gain
    return (gain / total) * 100.0 if total > 0.0 else 0.0


@kernel
def _rsi(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n, size)] = NAN
    if size <= n:
        return
    recip = 1.0 / n
    n1 = float(n - 1)
    gain = 0.0
    loss = 0.0
    for i in range(n):
        up, down = _moves(real[i + 1] - real[i])
        gain += up
        loss += down
    gain *= recip
    loss *= recip
    out[n] = _rsi_value(gain, loss)
    now, before, dst = real[n + 1 :], real[n:], out[n + 1 :]  # views, as in _macd
    for k in range(size - n - 1):
        prefetch(now, k + AHEAD)
        up, down = _moves(now[k] - before[k])
        gain = _wilder(gain, up, n1, recip)
        loss = _wilder(loss, down, n1, recip)
        dst[k] = _rsi_value(gain, loss)


@step
def rsi_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, 1 / timeperiod, previous close, average gain, average loss
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN
        return
    count = st[b] + 1.0
    st[b] = count
    n = st[b + 1]
    up, down = _moves(close - st[b + 3])
    st[b + 3] = close
    out[o] = NAN
    if count == 1.0:
        return
    if count <= n + 1.0:
        st[b + 4] += up
        st[b + 5] += down
        if count <= n:
            return
        st[b + 4] *= st[b + 2]
        st[b + 5] *= st[b + 2]
    else:
        st[b + 4] = _wilder(st[b + 4], up, n - 1.0, st[b + 2])
        st[b + 5] = _wilder(st[b + 5], down, n - 1.0, st[b + 2])
    out[o] = _rsi_value(st[b + 4], st[b + 5])


def _rsi_init(state, base, timeperiod):
    state[base + 1] = timeperiod
    state[base + 2] = 1.0 / timeperiod


def rsi(real, timeperiod=14):
    """Relative strength index with Wilder's smoothing, seeded with the mean gain and loss of the
    first ``timeperiod`` changes; NaN for the first ``timeperiod`` values."""
    bound = RSI.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _rsi(x, bound["timeperiod"], tail)
    return out


RSI = Indicator(
    name="rsi",
    step=rsi_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(default=14),),
    batch=rsi,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 6,
    init=_rsi_init,
)


# --- MACD ------------------------------------------------------------------------------------
@kernel
def _macd(real, fastperiod, slowperiod, signalperiod, macd, signal, hist):
    fast = min(fastperiod, slowperiod)  # TA-Lib swaps the periods if slow < fast
    slow = max(fastperiod, slowperiod)
    sig_n = signalperiod
    size = real.shape[0]
    lookback = slow + sig_n - 2
    head = min(lookback, size)
    macd[:head] = NAN
    signal[:head] = NAN
    hist[:head] = NAN
    if size <= lookback:
        return
    fast_k = 2.0 / (fast + 1)
    slow_k = 2.0 / (slow + 1)
    sig_k = 2.0 / (sig_n + 1)
    # both averages are seeded with a mean; the fast window is the tail of the slow one
    slow_sum = 0.0
    for i in range(slow - fast):
        slow_sum += real[i]
    fast_sum = 0.0
    for i in range(slow - fast, slow):
        fast_sum += real[i]
        slow_sum += real[i]
    prev_slow = slow_sum / slow
    prev_fast = fast_sum / fast
    value = prev_fast - prev_slow
    prev_sig = 0.0 + value
    for i in range(slow, lookback + 1):
        prev_fast = ema_next(prev_fast, real[i], fast_k)
        prev_slow = ema_next(prev_slow, real[i], slow_k)
        value = prev_fast - prev_slow
        prev_sig += value
    prev_sig = prev_sig / sig_n
    macd[lookback] = value
    signal[lookback] = prev_sig
    hist[lookback] = value - prev_sig
    x = real[lookback + 1 :]  # views: indices start at 0, so numba drops its negative-index fix-up
    out_macd, out_signal, out_hist = (
        macd[lookback + 1 :],
        signal[lookback + 1 :],
        hist[lookback + 1 :],
    )
    for k in range(size - lookback - 1):
        prefetch(x, k + AHEAD)
        prev_fast = ema_next(prev_fast, x[k], fast_k)
        prev_slow = ema_next(prev_slow, x[k], slow_k)
        value = prev_fast - prev_slow
        prev_sig = ema_next(prev_sig, value, sig_k)
        out_macd[k] = value
        out_signal[k] = prev_sig
        out_hist[k] = value - prev_sig


@step
def macd_step(st, b, high, low, close, volume, session, out, o):
    # state: count, fastperiod, slowperiod, signalperiod, fast k, slow k, signal k,
    # fast EMA (its sum while seeding), slow EMA (likewise), signal EMA (likewise)
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN
        out[o + 1] = NAN
        out[o + 2] = NAN
        return
    count = st[b] + 1.0
    st[b] = count
    fast = min(st[b + 1], st[b + 2])
    slow = max(st[b + 1], st[b + 2])
    sig_n = st[b + 3]
    if count <= slow:
        if count > slow - fast:
            st[b + 7] += close
        st[b + 8] += close
        if count < slow:
            out[o] = NAN
            out[o + 1] = NAN
            out[o + 2] = NAN
            return
        prev_fast = st[b + 7] / fast
        prev_slow = st[b + 8] / slow
        value = prev_fast - prev_slow
        prev_sig = 0.0 + value
    else:
        prev_fast = ema_next(st[b + 7], close, st[b + 4])
        prev_slow = ema_next(st[b + 8], close, st[b + 5])
        value = prev_fast - prev_slow
        if count < slow + sig_n:
            prev_sig = st[b + 9] + value
        else:
            prev_sig = ema_next(st[b + 9], value, st[b + 6])
    if count == slow + sig_n - 1.0:
        prev_sig = prev_sig / sig_n
    st[b + 7] = prev_fast
    st[b + 8] = prev_slow
    st[b + 9] = prev_sig
    if count < slow + sig_n - 1.0:
        out[o] = NAN
        out[o + 1] = NAN
        out[o + 2] = NAN
    else:
        out[o] = value
        out[o + 1] = prev_sig
        out[o + 2] = value - prev_sig


def _macd_init(state, base, fastperiod, slowperiod, signalperiod):
    state[base + 1 : base + 4] = (fastperiod, slowperiod, signalperiod)
    fast, slow = sorted((fastperiod, slowperiod))
    state[base + 4] = 2.0 / (fast + 1)
    state[base + 5] = 2.0 / (slow + 1)
    state[base + 6] = 2.0 / (signalperiod + 1)


def macd(real, fastperiod=12, slowperiod=26, signalperiod=9):
    """Moving average convergence/divergence: (macd, macdsignal, macdhist).

    macd = EMA(fastperiod) - EMA(slowperiod) (periods swapped if slow < fast), both seeded with
    the mean of their first values ending on the same bar; macdsignal = EMA(signalperiod) of macd
    seeded likewise; macdhist = macd - macdsignal. NaN for the first
    ``slowperiod + signalperiod - 2`` values.
    """
    bound = MACD.bind(fastperiod=fastperiod, slowperiod=slowperiod, signalperiod=signalperiod)
    (x,), outs, tails = inputs.prepare(("real",), real, outputs=3)
    _macd(x, *bound.values(), *tails)
    return outs


MACD = Indicator(
    name="macd",
    step=macd_step,
    inputs=("close",),
    outputs=("macd", "macdsignal", "macdhist"),
    params=(
        period("fastperiod", 12),
        period("slowperiod", 26),
        period("signalperiod", 9, low=1),
    ),
    batch=macd,
    lookback=lambda fastperiod, slowperiod, signalperiod: (
        max(fastperiod, slowperiod) + signalperiod - 2
    ),
    width=lambda fastperiod, slowperiod, signalperiod: 10,
    init=_macd_init,
)


# --- ROC and MOM -----------------------------------------------------------------------------
@step
def _roc_value(x, past):
    """((x / past) - 1) * 100, or 0 where the past value is 0 (TA-Lib's convention)."""
    return (x / past - 1.0) * 100.0 if past != 0.0 else 0.0


@kernel
def _roc(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n, size)] = NAN
    now, dst = real[n:], out[n:]
    for k in range(size - n):
        dst[k] = _roc_value(now[k], real[k])


@kernel
def _mom(real, timeperiod, out):
    n = timeperiod
    size = real.shape[0]
    out[: min(n, size)] = NAN
    now, dst = real[n:], out[n:]
    for k in range(size - n):
        dst[k] = now[k] - real[k]


@step
def _lagged(st, b, close):
    """Count ``close``, keep it in the state's ring of ``timeperiod`` values and return the value
    ``timeperiod`` updates back (meaningless until count > timeperiod)."""
    count = st[b] + 1.0
    st[b] = count
    n = int(st[b + 1])
    slot = b + 2 + int(count - 1.0) % n
    past = st[slot]
    st[slot] = close
    return past


@step
def roc_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, ring[timeperiod]
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN
        return
    past = _lagged(st, b, close)
    out[o] = _roc_value(close, past) if st[b] > st[b + 1] else NAN


@step
def mom_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, ring[timeperiod]
    if st[b] == 0.0 and np.isnan(close):
        out[o] = NAN
        return
    past = _lagged(st, b, close)
    out[o] = close - past if st[b] > st[b + 1] else NAN


def roc(real, timeperiod=10):
    """Rate of change in percent, (real / real[-timeperiod] - 1) * 100 (0 where the earlier value
    is 0); NaN for the first ``timeperiod`` values."""
    bound = ROC.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _roc(x, bound["timeperiod"], tail)
    return out


def mom(real, timeperiod=10):
    """Momentum, real - real[-timeperiod]; NaN for the first ``timeperiod`` values."""
    bound = MOM.bind(timeperiod=timeperiod)
    (x,), (out,), (tail,) = inputs.prepare(("real",), real)
    _mom(x, bound["timeperiod"], tail)
    return out


ROC = Indicator(
    name="roc",
    step=roc_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(default=10, low=1),),
    batch=roc,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 2 + timeperiod,
)

MOM = Indicator(
    name="mom",
    step=mom_step,
    inputs=("close",),
    outputs=("real",),
    params=(period(default=10, low=1),),
    batch=mom,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 2 + timeperiod,
)


# --- CCI -------------------------------------------------------------------------------------
# TA-Lib sums the ring of the last n typical prices in slot order for every bar: two chains of n
# additions a bar, 50 cycles of latency. The batch kernel computes 32 bars at once instead, each
# in a vector lane with TA-Lib's own order of additions, so every lane's bits are TA-Lib's. Bar j
# of a cycle (n bars that fill the ring once, starting at slot 0) sees slots 0..j written in this
# cycle and slots j+1..n-1 from the last one, so the lanes are bar j of 32 consecutive cycles: at
# each slot they read 32 adjacent cells of a table laid out by slot and cycle.
_CCI_CYCLES = 64  # cycles a block of the table holds
_CCI_LANES = 32  # bars computed together: 4 vectors of 8, as 4 x 8 scalars the SLP vectorizer packs
_L = tuple(np.uint64(i) for i in range(25))  # unsigned offsets: no negative-index fix-up


@step
def _cci_out(last, mean, deviation):
    """(last - mean) / (0.015 * mean deviation), or 0 when either is within 1e-14 of the mean's
    size (TA-Lib's dead zone) or the divisor is 0. Written without branches, so it vectorizes."""
    band = abs(mean) * EPSILON
    scaled = deviation * 0.015
    value = (last - mean) / scaled
    dead = (abs(last - mean) <= band) | (abs(deviation) <= band) | (scaled == 0.0)
    return 0.0 if dead else value


@step
def _cci_value(ring, n, last):
    """CCI of the ``n`` typical prices in ``ring``, the newest being ``last``. The sums run over
    the ring in slot order, not time order, as TA-Lib's do, so the bits match."""
    mean = 0.0
    for j in range(n):
        mean += ring[j]
    mean /= n
    dev = 0.0
    for j in range(n):
        dev += abs(ring[j] - mean)
    return _cci_out(last, mean, dev / n)


@step
def _add8(acc, row, o):
    """``acc`` plus the 8 cells of ``row`` from ``o``."""
    return (
        acc[0] + row[o],
        acc[1] + row[o + _L[1]],
        acc[2] + row[o + _L[2]],
        acc[3] + row[o + _L[3]],
        acc[4] + row[o + _L[4]],
        acc[5] + row[o + _L[5]],
        acc[6] + row[o + _L[6]],
        acc[7] + row[o + _L[7]],
    )


@step
def _add_dev8(acc, row, o, mean):
    """``acc`` plus the distances of the 8 cells of ``row`` from ``o`` to their lane's mean."""
    return (
        acc[0] + abs(row[o] - mean[0]),
        acc[1] + abs(row[o + _L[1]] - mean[1]),
        acc[2] + abs(row[o + _L[2]] - mean[2]),
        acc[3] + abs(row[o + _L[3]] - mean[3]),
        acc[4] + abs(row[o + _L[4]] - mean[4]),
        acc[5] + abs(row[o + _L[5]] - mean[5]),
        acc[6] + abs(row[o + _L[6]] - mean[6]),
        acc[7] + abs(row[o + _L[7]] - mean[7]),
    )


@step
def _div8(acc, n):
    return (
        acc[0] / n,
        acc[1] / n,
        acc[2] / n,
        acc[3] / n,
        acc[4] / n,
        acc[5] / n,
        acc[6] / n,
        acc[7] / n,
    )


@step
def _cci8(row, o, mean, dev):
    """:func:`_cci_out` of 8 lanes; ``row`` from ``o`` holds their newest typical prices."""
    return (
        _cci_out(row[o], mean[0], dev[0]),
        _cci_out(row[o + _L[1]], mean[1], dev[1]),
        _cci_out(row[o + _L[2]], mean[2], dev[2]),
        _cci_out(row[o + _L[3]], mean[3], dev[3]),
        _cci_out(row[o + _L[4]], mean[4], dev[4]),
        _cci_out(row[o + _L[5]], mean[5], dev[5]),
        _cci_out(row[o + _L[6]], mean[6], dev[6]),
        _cci_out(row[o + _L[7]], mean[7], dev[7]),
    )


@step
def _cci_lanes(table, width, n, j, c, res):
    """CCI of bar ``j`` of the cycles ``c`` .. ``c + 31`` of ``table`` into ``res[0:32]``."""
    new = np.uint64(c + 1)  # cells of this cycle: slots 0..j
    old = np.uint64(c)  # of the cycle before: slots j+1..n-1
    z = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    a = b = d = e = z
    for m in range(j + 1):
        row = table[m * width : (m + 1) * width]
        a, b = _add8(a, row, new), _add8(b, row, new + _L[8])
        d, e = _add8(d, row, new + _L[16]), _add8(e, row, new + _L[24])
    for m in range(j + 1, n):
        row = table[m * width : (m + 1) * width]
        a, b = _add8(a, row, old), _add8(b, row, old + _L[8])
        d, e = _add8(d, row, old + _L[16]), _add8(e, row, old + _L[24])
    a, b, d, e = _div8(a, n), _div8(b, n), _div8(d, n), _div8(e, n)
    da = db = dd = de = z
    for m in range(j + 1):
        row = table[m * width : (m + 1) * width]
        da, db = _add_dev8(da, row, new, a), _add_dev8(db, row, new + _L[8], b)
        dd = _add_dev8(dd, row, new + _L[16], d)
        de = _add_dev8(de, row, new + _L[24], e)
    for m in range(j + 1, n):
        row = table[m * width : (m + 1) * width]
        da, db = _add_dev8(da, row, old, a), _add_dev8(db, row, old + _L[8], b)
        dd = _add_dev8(dd, row, old + _L[16], d)
        de = _add_dev8(de, row, old + _L[24], e)
    da, db, dd, de = _div8(da, n), _div8(db, n), _div8(dd, n), _div8(de, n)
    row = table[j * width : (j + 1) * width]
    ra, rb = _cci8(row, new, a, da), _cci8(row, new + _L[8], b, db)
    rd, re = _cci8(row, new + _L[16], d, dd), _cci8(row, new + _L[24], e, de)
    for q in range(8):
        res[q] = ra[q]
        res[q + 8] = rb[q]
        res[q + 16] = rd[q]
        res[q + 24] = re[q]


@lane_kernel
def _cci(high, low, close, timeperiod, out):
    n = timeperiod
    size = close.shape[0]
    out[: min(n - 1, size)] = NAN
    if size < n:
        return
    cycles = _CCI_CYCLES
    # Row m of the table (``width`` cells from m * width), cell c: the typical price in slot m
    # during cycle c - 1 of the block; cell 0 is from the last cycle of the block before (0.0
    # before the first, read only by bars without output).
    width = cycles + 1
    table = np.empty(n * width)
    for m in range(n):
        table[m * width + cycles] = 0.0
    typical = np.empty(cycles * n)
    res = np.empty(_CCI_LANES)
    for first in range(0, size, cycles * n):
        stop = min(cycles * n, size - first)
        end = first + stop
        hh, ll, cc = high[first:end], low[first:end], close[first:end]
        for i in range(stop):
            typical[i] = (hh[i] + ll[i] + cc[i]) / 3
        for m in range(n):
            table[m * width] = table[m * width + cycles]
        for c in range(cycles):
            for m in range(n):
                table[m * width + c + 1] = typical[c * n + m]  # past ``stop``: unused lanes
        for j in range(n):
            for c in range(0, cycles, _CCI_LANES):
                dst = out[first + c * n + j :: n]  # bar j of the cycles c, c + 1, ...
                if dst.shape[0] == 0:
                    break
                _cci_lanes(table, width, n, j, c, res)
                skip = 1 if first == 0 and c == 0 and j < n - 1 else 0  # cycle 0: bar n - 1 only
                for q in range(skip, min(_CCI_LANES, dst.shape[0])):
                    dst[q] = res[q]


@step
def cci_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, ring[timeperiod] of typical prices
    if st[b] == 0.0 and (np.isnan(high) or np.isnan(low) or np.isnan(close)):
        out[o] = NAN
        return
    count = st[b] + 1.0
    st[b] = count
    n = int(st[b + 1])
    typical = (high + low + close) / 3
    st[b + 2 + int(count - 1.0) % n] = typical
    out[o] = _cci_value(st[b + 2 : b + 2 + n], n, typical) if count >= n else NAN


def cci(high, low, close, timeperiod=14):
    """Commodity channel index of the typical price (high + low + close) / 3 over
    ``timeperiod`` bars, with Lambert's 0.015; NaN for the first ``timeperiod - 1``."""
    bound = CCI.bind(timeperiod=timeperiod)
    (h, lo, c), (out,), (tail,) = inputs.prepare(("high", "low", "close"), high, low, close)
    _cci(h, lo, c, bound["timeperiod"], tail)
    return out


CCI = Indicator(
    name="cci",
    step=cci_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(period(default=14),),
    batch=cci,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 2 + timeperiod,
)


# --- ULTOSC ----------------------------------------------------------------------------------
@step
def _ultosc_terms(high, low, close, prev_close):
    """Buying pressure (close - true low) and true range, with TA-Lib's comparisons (which decide
    what a NaN does)."""
    true_low = low if low < prev_close else prev_close
    true_range = high - low
    gap = abs(prev_close - high)
    true_range = gap if gap > true_range else true_range
    gap = abs(prev_close - low)
    true_range = gap if gap > true_range else true_range
    return close - true_low, true_range


@step
def _ultosc_value(a1, b1, a2, b2, a3, b3):
    """Weighted 4:2:1 average of the three pressure ratios, shortest window first, in percent; a
    window without true range (or with NaN in it) contributes nothing. (TA-Lib builds ULTOSC
    without FMA; a product by 4 or 2 is exact, so fusing it into the sum rounds the same.)"""
    total = 0.0
    if b1 > 0.0:
        total += 4.0 * (a1 / b1)
    if b2 > 0.0:
        total += 2.0 * (a2 / b2)
    if b3 > 0.0:
        total += a3 / b3
    return 100.0 * (total / 7.0)


@step
def _idle_next(idle, pressure, true_range):
    """Bars in a row that add nothing to the windows (TA-Lib zeroes a window's sums once all of
    its bars are such, rather than keep their rounding residue)."""
    return idle + 1 if (true_range == 0.0) & (pressure == 0.0) else 0


@step
def _ultosc_add(sums, pa, pr, i):
    """The three windows' sums (a1, b1, a2, b2, a3, b3) with the terms at ``i`` added."""
    a = at(pa, i)
    r = at(pr, i)
    return (sums[0] + a, sums[1] + r, sums[2] + a, sums[3] + r, sums[4] + a, sums[5] + r)


@step
def _ultosc_drop(sums, pa, pr, i, short, middle, longest):
    """The sums without the bar that leaves each window after the bar at ``i``."""
    o1, o2, o3 = i - short + 1, i - middle + 1, i - longest + 1
    return (
        sums[0] - at(pa, o1),
        sums[1] - at(pr, o1),
        sums[2] - at(pa, o2),
        sums[3] - at(pr, o2),
        sums[4] - at(pa, o3),
        sums[5] - at(pr, o3),
    )


@step
def _ultosc_of(s):
    return _ultosc_value(s[0], s[1], s[2], s[3], s[4], s[5])


@lane_kernel
def _ultosc(high, low, close, short, middle, longest, out):
    size = close.shape[0]
    out[: min(longest, size)] = NAN
    if size <= longest:
        return
    # The terms of the ``longest`` bars before a block, then the block's: the bars leaving the
    # windows are read at fixed offsets behind, without a ring. Bar 0 has no terms (0.0).
    pa = np.zeros(longest + BLOCK)  # buying pressure
    pr = np.zeros(longest + BLOCK)  # true range
    a1 = b1 = a2 = b2 = a3 = b3 = 0.0
    idle = 0
    for i in range(1, longest):
        a, r = _ultosc_terms(high[i], low[i], close[i], close[i - 1])
        pa[i] = a
        pr[i] = r
        idle = _idle_next(idle, a, r)
        if i > longest - short:
            a1 += a
            b1 += r
        if i > longest - middle:
            a2 += a
            b2 += r
        a3 += a
        b3 += r
    sums = (a1, b1, a2, b2, a3, b3)
    for start in range(longest, size, BLOCK):
        stop = min(start + BLOCK, size)
        count = stop - start
        hh, ll, cc, pc = high[start:stop], low[start:stop], close[start:stop], close[start - 1 :]
        na, nr = pa[longest:], pr[longest:]
        flat = 0  # bars without pressure or range: only they move the idle count
        for j in range(count):
            a, r = _ultosc_terms(hh[j], ll[j], cc[j], pc[j])
            na[j] = a
            nr[j] = r
            flat += (a == 0.0) & (r == 0.0)
        dst = out[start:stop]
        i = longest  # the buffer index of the block's first bar
        if flat == 0:
            # No idle run in this block: the sums run without the idle checks, four bars per
            # step, so that the four bars' divisions go into one vector division each (the SLP
            # vectorizer of lane_kernel) and overlap the next bars' additions.
            idle = 0
            full = count - count % 4
            for j in range(0, full, 4):
                s0 = _ultosc_add(sums, pa, pr, i + j)
                s1 = _ultosc_add(
                    _ultosc_drop(s0, pa, pr, i + j, short, middle, longest), pa, pr, i + j + 1
                )
                s2 = _ultosc_add(
                    _ultosc_drop(s1, pa, pr, i + j + 1, short, middle, longest), pa, pr, i + j + 2
                )
                s3 = _ultosc_add(
                    _ultosc_drop(s2, pa, pr, i + j + 2, short, middle, longest), pa, pr, i + j + 3
                )
                sums = _ultosc_drop(s3, pa, pr, i + j + 3, short, middle, longest)
                dst[j] = _ultosc_of(s0)
                dst[j + 1] = _ultosc_of(s1)
                dst[j + 2] = _ultosc_of(s2)
                dst[j + 3] = _ultosc_of(s3)
            first = full
        else:
            first = 0
        for j in range(first, count):
            sums = _ultosc_add(sums, pa, pr, i + j)
            if flat:
                idle = _idle_next(idle, na[j], nr[j])
                if idle >= short:  # TA-Lib zeroes an idle window's sums (no rounding residue)
                    a1, b1, a2, b2, a3, b3 = sums
                    sums = (0.0, 0.0, a2, b2, a3, b3)
                    if idle >= middle:
                        sums = (0.0, 0.0, 0.0, 0.0, a3, b3)
                        if idle >= longest:
                            idle = longest
                            sums = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            dst[j] = _ultosc_of(sums)
            sums = _ultosc_drop(sums, pa, pr, i + j, short, middle, longest)
        for k in range(longest):  # the last ``longest`` bars' terms lead the next block
            pa[k] = pa[count + k]
            pr[k] = pr[count + k]


@step
def ultosc_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod1..3, the periods sorted, previous close, a1, b1, a2, b2, a3, b3,
    # idle bars, ring[longest] of pressures, ring[longest] of true ranges
    if st[b] == 0.0 and (np.isnan(high) or np.isnan(low) or np.isnan(close)):
        out[o] = NAN
        return
    count = st[b] + 1.0
    st[b] = count
    prev_close = st[b + 7]
    st[b + 7] = close
    out[o] = NAN
    if count == 1.0:
        return
    i = int(count) - 1  # bar index, as in the batch kernel
    short = int(st[b + 4])
    middle = int(st[b + 5])
    longest = int(st[b + 6])
    ring_a = b + 15
    ring_b = ring_a + longest
    a, r = _ultosc_terms(high, low, close, prev_close)
    st[ring_a + i % longest] = a
    st[ring_b + i % longest] = r
    idle = _idle_next(int(st[b + 14]), a, r)
    st[b + 14] = idle
    if i > longest - short:
        st[b + 8] += a
        st[b + 9] += r
    if i > longest - middle:
        st[b + 10] += a
        st[b + 11] += r
    st[b + 12] += a
    st[b + 13] += r
    if i < longest:
        return
    if idle >= short:
        st[b + 8] = st[b + 9] = 0.0
        if idle >= middle:
            st[b + 10] = st[b + 11] = 0.0
            if idle >= longest:
                st[b + 14] = longest
                st[b + 12] = st[b + 13] = 0.0
    out[o] = _ultosc_value(st[b + 8], st[b + 9], st[b + 10], st[b + 11], st[b + 12], st[b + 13])
    old = (i - short + 1) % longest
    st[b + 8] -= st[ring_a + old]
    st[b + 9] -= st[ring_b + old]
    old = (i - middle + 1) % longest
    st[b + 10] -= st[ring_a + old]
    st[b + 11] -= st[ring_b + old]
    old = (i + 1) % longest
    st[b + 12] -= st[ring_a + old]
    st[b + 13] -= st[ring_b + old]


def _ultosc_init(state, base, timeperiod1, timeperiod2, timeperiod3):
    state[base + 1 : base + 4] = (timeperiod1, timeperiod2, timeperiod3)
    state[base + 4 : base + 7] = sorted((timeperiod1, timeperiod2, timeperiod3))


def ultosc(high, low, close, timeperiod1=7, timeperiod2=14, timeperiod3=28):
    """Ultimate oscillator: buying pressure over true range on three windows weighted 4:2:1,
    shortest first (TA-Lib sorts the periods, so their order does not matter); NaN for the
    first ``max(periods)`` values."""
    bound = ULTOSC.bind(timeperiod1=timeperiod1, timeperiod2=timeperiod2, timeperiod3=timeperiod3)
    (h, lo, c), (out,), (tail,) = inputs.prepare(("high", "low", "close"), high, low, close)
    _ultosc(h, lo, c, *sorted(bound.values()), tail)
    return out


ULTOSC = Indicator(
    name="ultosc",
    step=ultosc_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(
        period("timeperiod1", 7, low=1),
        period("timeperiod2", 14, low=1),
        period("timeperiod3", 28, low=1),
    ),
    batch=ultosc,
    lookback=lambda timeperiod1, timeperiod2, timeperiod3: max(
        timeperiod1, timeperiod2, timeperiod3
    ),
    width=lambda timeperiod1, timeperiod2, timeperiod3: (
        15 + 2 * max(timeperiod1, timeperiod2, timeperiod3)
    ),
    init=_ultosc_init,
)


# --- MFI -------------------------------------------------------------------------------------
@step
def _mfi_flows(typical, prev, volume):
    """The bar's positive and negative money flow: none when the typical price moved less than
    TA-Lib's dead zone (1e-14 of its size), the flow on the side of the move otherwise."""
    diff = typical - prev
    flow = 0.0 if abs(diff) <= EPSILON * (abs(typical) + abs(prev)) else typical * volume
    down = diff < 0.0
    return (0.0 if down else flow), (flow if down else 0.0)


@step
def _mfi_value(pos, neg):
    """100 * pos / (pos + neg), with pos clamped into [0, pos + neg]; 0 for an empty window."""
    total = pos + neg
    pos = 0.0 if pos < 0.0 else (total if pos > total else pos)
    return 0.0 if total <= 0.0 else 100.0 * (pos / total)


@step
def _mfi_add(pos_sum, neg_sum, idle, pos, neg, none, n):
    """The window sums with a bar's flows added, and the count of bars in a row without flow:
    after ``n`` of them every slot is 0, so TA-Lib sets the sums to exactly 0 (no residue)."""
    idle = idle + 1 if none else 0
    if idle >= n:
        return 0.0, 0.0, n
    return pos_sum + pos, neg_sum + neg, idle


@kernel
def _mfi(high, low, close, volume, timeperiod, out):
    n = timeperiod
    size = close.shape[0]
    out[: min(n, size)] = NAN
    if size <= n:
        return
    # Slot of bar i: (i - 1) % n. Subtracting a still empty (0.0) slot is exact, so the first
    # n bars need no loop of their own.
    ring_pos = np.zeros(n)
    ring_neg = np.zeros(n)
    pos_sum = 0.0
    neg_sum = 0.0
    idle = 0
    last = np.uint64(n - 1)
    slot = U0
    # Per block, the flows (a division and two data-dependent selects per bar, which the serial
    # loop would compile into a mispredicted branch) and the index (another division) are
    # computed in vector loops around the serial loop of the running sums.
    work = np.empty((5, BLOCK + 1))
    typicals, pos_flows, neg_flows, pos_sums, neg_sums = work[0], work[1], work[2], work[3], work[4]
    typicals[BLOCK] = (high[0] + low[0] + close[0]) / 3.0
    for start in range(1, size, BLOCK):
        stop = min(start + BLOCK, size)
        hh, ll, cc, vv = high[start:stop], low[start:stop], close[start:stop], volume[start:stop]
        count = stop - start
        typicals[0] = typicals[BLOCK]  # the previous bar's
        for j in range(count):
            typicals[j + 1] = (hh[j] + ll[j] + cc[j]) / 3.0
        for j in range(count):
            pos_flows[j], neg_flows[j] = _mfi_flows(typicals[j + 1], typicals[j], vv[j])
        typicals[BLOCK] = typicals[count]
        for j in range(count):
            pos_sum -= ring_pos[slot]
            neg_sum -= ring_neg[slot]
            pos = pos_flows[j]
            neg = neg_flows[j]
            ring_pos[slot] = pos
            ring_neg[slot] = neg
            none = (pos == 0.0) & (neg == 0.0)  # no flow (not a branch: the sign is random)
            pos_sum, neg_sum, idle = _mfi_add(pos_sum, neg_sum, idle, pos, neg, none, n)
            pos_sums[j] = pos_sum
            neg_sums[j] = neg_sum
            slot = _ring_next(slot, last)
        first = max(n - start, 0)
        dst = out[start:stop]
        for j in range(first, count):
            dst[j] = _mfi_value(pos_sums[j], neg_sums[j])


@step
def mfi_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, previous typical price, positive sum, negative sum, idle bars,
    # ring[timeperiod] of positive flows, ring[timeperiod] of negative flows
    if st[b] == 0.0 and (np.isnan(high) or np.isnan(low) or np.isnan(close) or np.isnan(volume)):
        out[o] = NAN
        return
    count = st[b] + 1.0
    st[b] = count
    n = int(st[b + 1])
    typical = (high + low + close) / 3.0
    prev = st[b + 2]
    st[b + 2] = typical
    if count == 1.0:
        out[o] = NAN
        return
    i = int(count) - 1  # bar index, as in the batch kernel
    ring_pos = b + 6 + (i - 1) % n
    ring_neg = ring_pos + n
    pos_sum = st[b + 3] - st[ring_pos]  # exact while the slot is still empty (0.0)
    neg_sum = st[b + 4] - st[ring_neg]
    pos, neg = _mfi_flows(typical, prev, volume)
    st[ring_pos] = pos
    st[ring_neg] = neg
    none = (pos == 0.0) & (neg == 0.0)
    st[b + 3], st[b + 4], st[b + 5] = _mfi_add(pos_sum, neg_sum, st[b + 5], pos, neg, none, n)
    out[o] = _mfi_value(st[b + 3], st[b + 4]) if i >= n else NAN


def mfi(high, low, close, volume, timeperiod=14):
    """Money flow index over ``timeperiod`` bars of typical price times volume; NaN for the first
    ``timeperiod`` values."""
    bound = MFI.bind(timeperiod=timeperiod)
    (h, lo, c, v), (out,), (tail,) = inputs.prepare(
        ("high", "low", "close", "volume"), high, low, close, volume
    )
    _mfi(h, lo, c, v, bound["timeperiod"], tail)
    return out


MFI = Indicator(
    name="mfi",
    step=mfi_step,
    inputs=("high", "low", "close", "volume"),
    outputs=("real",),
    params=(period(default=14),),
    batch=mfi,
    lookback=lambda timeperiod: timeperiod,
    width=lambda timeperiod: 6 + 2 * timeperiod,
)


INDICATORS = (RSI, MACD, ROC, MOM, CCI, ULTOSC, MFI)
