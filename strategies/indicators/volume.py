"""Volume: OBV and AD (TA-Lib's definitions) and session-anchored VWAP.

All three are running sums with no warm-up. OBV and AD choose with selects, not branches (an up
or down close is a coin toss the branch predictor loses), written so that every bit of the sum is
the one TA-Lib's branchy code gives.
"""

from __future__ import annotations

import numpy as np

from tickd.strategies.indicators import inputs
from tickd.strategies.indicators.catalog import Indicator
from tickd.strategies.indicators.jit import kernel, step
from tickd.strategies.indicators.primitives import AHEAD, fence, fma, prefetch, prefetch3

NAN = np.nan


# --- OBV -------------------------------------------------------------------------------------
@step
def obv_next(obv, prev, x, volume):
    """Add the volume on an up close, subtract it on a down close (TA-Lib's ``prevOBV +=`` and
    ``-=``). Adding -0.0 on an unchanged (or NaN) close keeps every bit of ``obv``, so the sum
    needs no branch; ``obv - volume`` is ``obv + (-volume)`` exactly."""
    down = -volume
    signed = volume if x > prev else -0.0
    signed = down if x < prev else signed
    return obv + signed


@kernel
def _obv(real, volume, out):
    size = real.shape[0]
    if size == 0:
        return
    obv = volume[0]
    prev = real[0]
    for i in range(size):
        x = real[i]
        obv = obv_next(obv, prev, x, volume[i])
        out[i] = obv
        prev = x


@step
def obv_step(st, b, high, low, close, volume, session, out, o):
    # state: count, previous close, OBV
    if st[b] == 0.0:
        if np.isnan(close) or np.isnan(volume):
            out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
            return
        st[b + 1] = close
        st[b + 2] = volume
    st[b] += 1.0
    obv = obv_next(st[b + 2], st[b + 1], close, volume)
    st[b + 1] = close
    st[b + 2] = obv
    out[o] = obv


def obv(real, volume):
    """On-balance volume, starting from the first bar's volume; no warm-up."""
    (x, v), (out,), (tail,) = inputs.prepare(("real", "volume"), real, volume)
    _obv(x, v, tail)
    return out


OBV = Indicator(
    name="obv",
    step=obv_step,
    inputs=("close", "volume"),
    outputs=("real",),
    params=(),
    batch=obv,
    lookback=lambda: 0,
    width=lambda: 3,
)


# --- AD --------------------------------------------------------------------------------------
@step
def money_flow(high, low, close, volume):
    """((close - low) - (high - close)) / (high - low) * volume, rounded as TA-Lib's build does
    (product, then sum), where high > low; elsewhere -0.0, which adds to the line without
    changing a bit of it (so no branch is needed)."""
    spread = high - low
    flow = ((close - low) - (high - close)) / spread
    return fence(flow * volume) if spread > 0.0 else -0.0


@kernel
def _ad(high, low, close, volume, out):
    ad = 0.0
    for i in range(high.shape[0]):
        prefetch3(high, low, close, i + AHEAD)
        prefetch(volume, i + AHEAD)
        ad += money_flow(high[i], low[i], close[i], volume[i])
        out[i] = ad


@step
def ad_step(st, b, high, low, close, volume, session, out, o):
    # state: count, AD
    if st[b] == 0.0 and (np.isnan(high) or np.isnan(low) or np.isnan(close) or np.isnan(volume)):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    st[b] += 1.0
    ad = st[b + 1] + money_flow(high, low, close, volume)
    st[b + 1] = ad
    out[o] = ad


def ad(high, low, close, volume):
    """Chaikin accumulation/distribution line: the running sum of money-flow volume; no
    warm-up (bars with high == low add nothing)."""
    (h, lo, c, v), (out,), (tail,) = inputs.prepare(
        ("high", "low", "close", "volume"), high, low, close, volume
    )
    _ad(h, lo, c, v, tail)
    return out


AD = Indicator(
    name="ad",
    step=ad_step,
    inputs=("high", "low", "close", "volume"),
    outputs=("real",),
    params=(),
    batch=ad,
    lookback=lambda: 0,
    width=lambda: 2,
)


# --- VWAP ------------------------------------------------------------------------------------
@step
def vwap_next(pv, cv, new, high, low, close, volume):
    """The session's sums after this bar, starting afresh when ``new``, and the VWAP."""
    typical = (high + low + close) / 3.0
    pv = fma(typical, volume, 0.0 if new else pv)
    cv = (0.0 if new else cv) + volume
    return pv, cv, (pv / cv if cv != 0.0 else NAN)


@kernel
def _vwap(high, low, close, volume, session, out):
    pv = 0.0
    cv = 0.0
    previous = NAN  # differs from every session id: the first bar starts a session
    for i in range(high.shape[0]):
        s = session[i]
        pv, cv, out[i] = vwap_next(pv, cv, s != previous, high[i], low[i], close[i], volume[i])
        previous = s


@step
def vwap_step(st, b, high, low, close, volume, session, out, o):
    # state: count, session of the previous bar (NaN at first), price * volume and volume
    # summed over the session
    if st[b] == 0.0 and (
        np.isnan(high) or np.isnan(low) or np.isnan(close) or np.isnan(volume) or np.isnan(session)
    ):
        out[o] = NAN  # leading NaN are skipped, as TA-Lib's wrapper does
        return
    st[b] += 1.0
    new = session != st[b + 1]
    st[b + 1] = session
    st[b + 2], st[b + 3], out[o] = vwap_next(st[b + 2], st[b + 3], new, high, low, close, volume)


def _vwap_init(state, base):
    state[base + 1] = np.nan


def vwap(high, low, close, volume, session):
    """Session-anchored volume-weighted average price (TA-Lib has none).

    The typical price (high + low + close) / 3 weighted by volume and summed since the session
    began, divided by the volume summed since then. A session begins at the first bar and
    wherever ``session`` (session ids such as day numbers, as floats) differs from the previous
    bar's (a NaN id differs from everything). No warm-up; NaN while the session's volume sums to 0,
    and a NaN price or volume leaves NaN until the next session.
    """
    (h, lo, c, v, s), (out,), (tail,) = inputs.prepare(
        ("high", "low", "close", "volume", "session"), high, low, close, volume, session
    )
    _vwap(h, lo, c, v, s, tail)
    return out


VWAP = Indicator(
    name="vwap",
    step=vwap_step,
    inputs=("high", "low", "close", "volume", "session"),
    outputs=("real",),
    params=(),
    batch=vwap,
    lookback=lambda: 0,
    width=lambda: 4,
    init=_vwap_init,
)


INDICATORS = (OBV, AD, VWAP)
