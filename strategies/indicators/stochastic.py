"""Range oscillators: STOCH, STOCHF, WILLR (TA-Lib's definitions and warm-up).

Each replicates the TA-Lib build the ``ta-lib`` wheel bundles (C library 0.8.1), read from its
machine code where it departs from older sources: the fast %K is ``(close - lowest) / (highest -
lowest) * 100``, and 0 when the range is zero within 1e-14 of the prices' size; %R is computed
the same way times -100, clamped to [-100, 0], over a van Herk / Gil-Werman block scan whose
blocks start at the first bar. Highest and lowest use TA-Lib's comparisons, so a NaN price
drops out of or poisons a window exactly as it does there. These functions have no FMA in that
build, so products that meet an add go through :func:`.primitives.rounded`.
"""

from __future__ import annotations

import numpy as np

from tickd.strategies.indicators import inputs
from tickd.strategies.indicators.catalog import Indicator, matype, period
from tickd.strategies.indicators.jit import kernel, step
from tickd.strategies.indicators.primitives import at, put, rounded, skip_leading_nan

NAN = np.nan


@step
def fast_k(close, lowest, highest):
    """%K of ``close`` in the range [lowest, highest]; 0 for a range that is zero to 1e-14 of the
    prices' size (NaN goes through)."""
    diff = highest - lowest
    value = rounded((close - lowest) / diff * 100.0)
    return 0.0 if abs(diff) <= 1e-14 * (abs(highest) + abs(lowest)) else value


@step
def sma_next(ring, base, slot, total, x, n):
    """Feed ``x`` to TA-Lib's SMA over ``n`` values; returns (average, total, next slot).

    ``ring[base : base + n]`` keeps the last ``n`` values (``x`` goes to ``slot``). It starts as
    zeros: the first ``n - 1`` averages are partial (callers drop them) while the total is
    TA-Lib's running sum exactly, added to and then the oldest value (or a 0.0, which changes
    nothing) taken off. A period of 1 is a copy, as in ``TA_MA``.
    """
    if n == 1:
        return x, total, slot
    put(ring, base + slot, x)
    slot = slot + 1 if slot + 1 < n else 0
    total += x
    return total / n, total - at(ring, base + slot), slot


@step
def _sma_block(st, base, x, n):
    """:func:`sma_next` on a streaming block: total, slot, then the ring of ``n`` values."""
    average, total, slot = sma_next(st, base + 2, int(st[base + 1]), st[base], x, n)
    st[base] = total
    st[base + 1] = slot
    return average


@step
def _lowest_of(buf, first, count):
    """Lowest of ``buf[first : first + count]`` and its offset; the first of equal values wins
    and NaN drops out, as TA-Lib's ``<`` makes it."""
    best = at(buf, first)
    off = 0
    for j in range(1, count):
        x = at(buf, first + j)
        lower = x < best
        best = x if lower else best
        off = j if lower else off
    return best, off


@step
def _highest_of(buf, first, count):
    """Highest of ``count`` values, as :func:`_lowest_of`."""
    best = at(buf, first)
    off = 0
    for j in range(1, count):
        x = at(buf, first + j)
        higher = x > best
        best = x if higher else best
        off = j if higher else off
    return best, off


@step
def _track_low(buf, first, k, today, x, lowest, idx):
    """TA-Lib's lowest low of the ``k`` bars to ``today`` (``x``): rescanned (the window is
    ``buf[first : first + k]``) once the lowest left it, else replaced by a new low or a tie."""
    trailing = today - k + 1
    if idx < trailing:
        lowest, off = _lowest_of(buf, first, k)
        return lowest, trailing + off
    lower = x <= lowest
    return (x if lower else lowest), (today if lower else idx)


@step
def _track_high(buf, first, k, today, x, highest, idx):
    """TA-Lib's highest high, as :func:`_track_low`."""
    trailing = today - k + 1
    if idx < trailing:
        highest, off = _highest_of(buf, first, k)
        return highest, trailing + off
    higher = x >= highest
    return (x if higher else highest), (today if higher else idx)


# Streaming %K block: lowest, its bar, highest, its bar, ring slot, then the high and the low
# rings, each of 2k values: a bar is written at its slot and k slots on, so the window is always
# the k values after the newest bar's slot.
_KB = 5


def _k_block_init(state, base):
    state[base + 1] = -1.0  # no bar yet: the first %K rescans the window, as TA-Lib does
    state[base + 3] = -1.0


@step
def _fast_k_update(st, base, k, i, high, low, close):
    """%K at bar ``i`` (0-based) from the streaming block at ``st[base:]``; NaN before bar k-1."""
    ring_h = base + _KB
    ring_l = ring_h + 2 * k
    slot = int(st[base + 4])
    st[ring_h + slot] = st[ring_h + slot + k] = high
    st[ring_l + slot] = st[ring_l + slot + k] = low
    st[base + 4] = slot + 1 if slot + 1 < k else 0
    if i < k - 1:
        return NAN
    lowest, lowest_idx = _track_low(st, ring_l + slot + 1, k, i, low, st[base], st[base + 1])
    highest, highest_idx = _track_high(
        st, ring_h + slot + 1, k, i, high, st[base + 2], st[base + 3]
    )
    st[base] = lowest
    st[base + 1] = lowest_idx
    st[base + 2] = highest
    st[base + 3] = highest_idx
    return fast_k(close, lowest, highest)


# --- window extremes by blocks ----------------------------------------------------------------
@step
def _higher(x, best):
    return x if x > best else best


@step
def _lower(x, best):
    return x if x < best else best


@step
def _block_suffix(high, at_h, low, at_l, ext_h, to_h, ext_l, to_l, p):
    """Highest high and lowest low of a block of ``p`` bars from each bar to its end, scanned
    backward: ``ext_h[to_h + j]`` is the highest of ``high[at_h + j : at_h + p]``."""
    best_h = at(high, at_h + p - 1)
    best_l = at(low, at_l + p - 1)
    put(ext_h, to_h + p - 1, best_h)
    put(ext_l, to_l + p - 1, best_l)
    for j in range(p - 2, -1, -1):
        best_h = _higher(at(high, at_h + j), best_h)
        best_l = _lower(at(low, at_l + j), best_l)
        put(ext_h, to_h + j, best_h)
        put(ext_l, to_l + j, best_l)


@step
def _block_extremes(high, low, start, p, size, ext_h, ext_l):
    """Highest high and lowest low of the windows of ``p`` bars ending at bars ``start + p - 1``
    on, into ``ext_h[m]``, ``ext_l[m]``; returns how many (``p``, fewer at the end).

    Van Herk / Gil-Werman, as TA-Lib's WILLR: the window ending at the block's last bar is the
    block; a later one joins the block's extremes from a bar to its end (:func:`_block_suffix`)
    to the next block's from its start (scanned forward), with TA-Lib's comparisons and ties.
    """
    _block_suffix(high, start, low, start, ext_h, 0, ext_l, 0, p)
    end = start + p - 1
    count = min(p, size - end)
    if count > 1:
        best_h = at(high, end + 1)
        best_l = at(low, end + 1)
        for m in range(1, count):
            best_h = _higher(at(high, end + m), best_h)
            best_l = _lower(at(low, end + m), best_l)
            put(ext_h, m, _higher(best_h, at(ext_h, m)))
            put(ext_l, m, _lower(best_l, at(ext_l, m)))
    return count


@step
def _any_nan(high, low, start, stop):
    """Whether a high or low in ``[start, stop)`` is NaN (a reduction LLVM vectorizes)."""
    bad = False
    for i in range(start, stop):
        h = at(high, i)
        lo = at(low, i)
        bad |= (h != h) | (lo != lo)
    return bad


# --- STOCH, STOCHF ---------------------------------------------------------------------------
# STOCHF(k, d) is STOCH(k, 1, d) bit for bit (TA-Lib's MA of period 1 copies): the kernels and
# the step serve both. TA-Lib keeps the lowest low and highest high with their bars and rescans
# the window when one leaves it; without NaN the extremes are exact whichever way they are found,
# so the block scan gives the same bits faster, and TA-Lib's own way runs only when high or low
# has a NaN (where it decides what comes out).
@kernel
def _stoch_blocks(high, low, close, k, sk, sd, slowk, slowd):
    size = high.shape[0]
    ext_h = np.empty(k)
    ext_l = np.empty(k)
    ring_k = np.zeros(sk)
    ring_s = np.zeros(sd)
    total_k = total_s = 0.0
    slot_k = slot_s = 0
    first_slow = k + sk - 2
    for start in range(0, size - k + 1, k):
        end = start + k - 1
        for m in range(_block_extremes(high, low, start, k, size, ext_h, ext_l)):
            today = end + m
            fk = fast_k(at(close, today), at(ext_l, m), at(ext_h, m))
            s, total_k, slot_k = sma_next(ring_k, 0, slot_k, total_k, fk, sk)
            if today >= first_slow:
                d, total_s, slot_s = sma_next(ring_s, 0, slot_s, total_s, s, sd)
                put(slowk, today, s)
                put(slowd, today, d)
    slowk[: min(first_slow + sd - 1, size)] = NAN
    slowd[: min(first_slow + sd - 1, size)] = NAN


@kernel
def _stoch_tracking(high, low, close, k, sk, sd, slowk, slowd):
    size = high.shape[0]
    ring_k = np.zeros(sk)
    ring_s = np.zeros(sd)
    total_k = total_s = lowest = highest = 0.0
    slot_k = slot_s = 0
    lowest_idx = highest_idx = -1
    first_slow = k + sk - 2
    for today in range(k - 1, size):
        trailing = today - k + 1
        lowest, lowest_idx = _track_low(low, trailing, k, today, at(low, today), lowest, lowest_idx)
        highest, highest_idx = _track_high(
            high, trailing, k, today, at(high, today), highest, highest_idx
        )
        fk = fast_k(at(close, today), lowest, highest)
        s, total_k, slot_k = sma_next(ring_k, 0, slot_k, total_k, fk, sk)
        if today >= first_slow:
            d, total_s, slot_s = sma_next(ring_s, 0, slot_s, total_s, s, sd)
            put(slowk, today, s)
            put(slowd, today, d)
    slowk[: min(first_slow + sd - 1, size)] = NAN
    slowd[: min(first_slow + sd - 1, size)] = NAN


@kernel
def _has_nan(high, low):
    return _any_nan(high, low, 0, high.shape[0])


def _stoch_batch(high, low, close, k, sk, sd):
    (h, lo, c), outs, tails = inputs.prepare(("high", "low", "close"), high, low, close, outputs=2)
    run = _stoch_tracking if _has_nan(h, lo) else _stoch_blocks
    run(h, lo, c, k, sk, sd, *tails)
    return outs


@step
def _stoch_update(st, b, base, k, sk, sd, high, low, close, out, o):
    """Streaming STOCH from the count at ``st[b]`` and the blocks from ``st[base]``: SMA of %K
    (total, slot, ring[sk]), SMA of slow %K (total, slot, ring[sd]), %K block."""
    if skip_leading_nan(st, b, high, low, close, out, o, 2):
        return
    count = st[b] + 1.0
    st[b] = count
    i = int(count) - 1
    out[o] = NAN
    out[o + 1] = NAN
    sma_s = base + 2 + sk
    fk = _fast_k_update(st, sma_s + 2 + sd, k, i, high, low, close)
    if i < k - 1:
        return
    s = _sma_block(st, base, fk, sk)
    first_slow = k + sk - 2
    if i < first_slow:
        return
    d = _sma_block(st, sma_s, s, sd)
    if i >= first_slow + sd - 1:
        out[o] = s
        out[o + 1] = d


@step
def stoch_step(st, b, high, low, close, volume, session, out, o):
    # state: count, 5 params, then the blocks of _stoch_update
    k, sk, sd = int(st[b + 1]), int(st[b + 2]), int(st[b + 4])
    _stoch_update(st, b, b + 6, k, sk, sd, high, low, close, out, o)


def _stoch_init(state, base, fastk_period, slowk_period, slowk_matype, slowd_period, slowd_matype):
    state[base + 1 : base + 6] = (
        fastk_period,
        slowk_period,
        slowk_matype,
        slowd_period,
        slowd_matype,
    )
    _k_block_init(state, base + 10 + slowk_period + slowd_period)


def stoch(
    high,
    low,
    close,
    fastk_period=5,
    slowk_period=3,
    slowk_matype=0,
    slowd_period=3,
    slowd_matype=0,
):
    """Slow stochastic: %K over ``fastk_period`` bars smoothed by an SMA of ``slowk_period``
    (slowk), and that smoothed by an SMA of ``slowd_period`` (slowd). Only SMA (matype 0).
    NaN for the first ``fastk_period + slowk_period + slowd_period - 3`` rows."""
    p = STOCH.bind(
        fastk_period=fastk_period,
        slowk_period=slowk_period,
        slowk_matype=slowk_matype,
        slowd_period=slowd_period,
        slowd_matype=slowd_matype,
    )
    return _stoch_batch(high, low, close, p["fastk_period"], p["slowk_period"], p["slowd_period"])


STOCH = Indicator(
    name="stoch",
    step=stoch_step,
    inputs=("high", "low", "close"),
    outputs=("slowk", "slowd"),
    params=(
        period("fastk_period", 5, low=1),
        period("slowk_period", 3, low=1),
        matype("slowk_matype"),
        period("slowd_period", 3, low=1),
        matype("slowd_matype"),
    ),
    batch=stoch,
    lookback=lambda fastk_period, slowk_period, slowd_period, **_: (
        fastk_period + slowk_period + slowd_period - 3
    ),
    width=lambda fastk_period, slowk_period, slowd_period, **_: (
        10 + slowk_period + slowd_period + _KB + 4 * fastk_period
    ),
    init=_stoch_init,
)


@step
def stochf_step(st, b, high, low, close, volume, session, out, o):
    # state: count, 3 params, then the blocks of _stoch_update with a %K SMA of 1
    k, fd = int(st[b + 1]), int(st[b + 2])
    _stoch_update(st, b, b + 4, k, 1, fd, high, low, close, out, o)


def _stochf_init(state, base, fastk_period, fastd_period, fastd_matype):
    state[base + 1 : base + 4] = (fastk_period, fastd_period, fastd_matype)
    _k_block_init(state, base + 9 + fastd_period)


def stochf(high, low, close, fastk_period=5, fastd_period=3, fastd_matype=0):
    """Fast stochastic: %K over ``fastk_period`` bars (fastk) and its SMA of ``fastd_period``
    (fastd). Only SMA (matype 0). NaN for the first ``fastk_period + fastd_period - 2`` rows."""
    p = STOCHF.bind(fastk_period=fastk_period, fastd_period=fastd_period, fastd_matype=fastd_matype)
    return _stoch_batch(high, low, close, p["fastk_period"], 1, p["fastd_period"])


STOCHF = Indicator(
    name="stochf",
    step=stochf_step,
    inputs=("high", "low", "close"),
    outputs=("fastk", "fastd"),
    params=(
        period("fastk_period", 5, low=1),
        period("fastd_period", 3, low=1),
        matype("fastd_matype"),
    ),
    batch=stochf,
    lookback=lambda fastk_period, fastd_period, **_: fastk_period + fastd_period - 2,
    width=lambda fastk_period, fastd_period, **_: 9 + fastd_period + _KB + 4 * fastk_period,
    init=_stochf_init,
)


# --- WILLR -----------------------------------------------------------------------------------
@step
def willr_value(close, highest, lowest):
    """Williams' %R of ``close`` in [lowest, highest], clamped to [-100, 0] as TA-Lib does; 0
    for a zero range (see :func:`fast_k`)."""
    diff = highest - lowest
    value = (highest - close) / diff * -100.0
    value = 0.0 if value > 0.0 else (-100.0 if value < -100.0 else value)
    return 0.0 if abs(diff) <= 1e-14 * (abs(highest) + abs(lowest)) else value


@kernel
def _willr(high, low, close, timeperiod, out):
    p = timeperiod
    size = high.shape[0]
    out[: min(p - 1, size)] = NAN
    ext_h = np.empty(p)
    ext_l = np.empty(p)
    for start in range(0, size - p + 1, p):
        end = start + p - 1
        for m in range(_block_extremes(high, low, start, p, size, ext_h, ext_l)):
            put(out, end + m, willr_value(at(close, end + m), at(ext_h, m), at(ext_l, m)))


@step
def willr_step(st, b, high, low, close, volume, session, out, o):
    # state: count, timeperiod, prefix high, prefix low, block highs[p], block lows[p], then the
    # highs and lows of the last complete block from each bar to its end (suffix, [p] each)
    if skip_leading_nan(st, b, high, low, close, out, o, 1):
        return
    count = st[b] + 1.0
    st[b] = count
    i = int(count) - 1
    p = int(st[b + 1])
    raw_h = b + 4
    raw_l = raw_h + p
    suf_h = raw_l + p
    suf_l = suf_h + p
    r = i % p
    st[raw_h + r] = high
    st[raw_l + r] = low
    if r == p - 1:
        _block_suffix(st, raw_h, st, raw_l, st, suf_h, st, suf_l, p)
        out[o] = willr_value(close, st[suf_h], st[suf_l])
        return
    if i < p:
        out[o] = NAN
        return
    pre_h = high if r == 0 else _higher(high, st[b + 2])
    pre_l = low if r == 0 else _lower(low, st[b + 3])
    st[b + 2] = pre_h
    st[b + 3] = pre_l
    out[o] = willr_value(close, _higher(pre_h, st[suf_h + r + 1]), _lower(pre_l, st[suf_l + r + 1]))


def willr(high, low, close, timeperiod=14):
    """Williams' %R over ``timeperiod`` bars, in [-100, 0]; NaN for the first
    ``timeperiod - 1`` rows."""
    p = WILLR.bind(timeperiod=timeperiod)
    (h, lo, c), (out,), (tail,) = inputs.prepare(("high", "low", "close"), high, low, close)
    _willr(h, lo, c, p["timeperiod"], tail)
    return out


WILLR = Indicator(
    name="willr",
    step=willr_step,
    inputs=("high", "low", "close"),
    outputs=("real",),
    params=(period(default=14),),
    batch=willr,
    lookback=lambda timeperiod: timeperiod - 1,
    width=lambda timeperiod: 4 + 4 * timeperiod,
)


INDICATORS = (STOCH, STOCHF, WILLR)
