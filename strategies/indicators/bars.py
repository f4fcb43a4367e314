"""Tick-to-bar aggregation: time bars of N seconds from trades, for many symbols, in one call.

Like :class:`bank.Bank`, a :class:`BarBank` keeps its per-symbol state and its output rows in one
float64 buffer and is fed a batch of trades per call. A bar covers ``[start, start + seconds)``
with ``start`` a multiple of ``seconds`` since the Unix epoch (so 60-second bars start on the
minute); it is emitted when the first trade of a later bar arrives, or by :meth:`BarBank.flush`
once the clock has passed its end, so a quiet symbol's last bar is not held back. Intervals with
no trade produce no bar (as Alpaca's bars). A trade older than its symbol's open bar is *late*: it
is not folded into a bar already emitted, it is counted per symbol in :attr:`BarBank.late`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tickd.strategies.indicators.jit import on_first_call, step

#: Columns of an emitted bar, in order.
BAR_FIELDS = ("symbol", "start", "open", "high", "low", "close", "volume", "vwap", "count")
#: Columns of a trade row (the timestamps, int64 ns, travel in their own array).
TRADE_FIELDS = ("symbol", "price", "size")

_N_SYMBOLS, _INTERVAL, _CAPACITY, _STATE, _OUT = range(5)
_HEADER = 5
# Per-symbol state: bar start (s, NaN when no bar is open), open, high, low, close, volume,
# price * size sum, trade count, late-trade count, start of the last bar emitted.
_START, _OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _PV, _COUNT, _LATE, _EMITTED = range(10)
_WIDTH = 10
_NS = 1_000_000_000


@step
def _emit(buf, row, out, n):
    o = out + n * len(BAR_FIELDS)
    symbol = (row - int(buf[_STATE])) // _WIDTH
    volume = buf[row + _VOLUME]
    buf[o] = symbol
    buf[o + 1] = buf[row + _START]
    buf[o + 2] = buf[row + _OPEN]
    buf[o + 3] = buf[row + _HIGH]
    buf[o + 4] = buf[row + _LOW]
    buf[o + 5] = buf[row + _CLOSE]
    buf[o + 6] = volume
    buf[o + 7] = buf[row + _PV] / volume if volume > 0.0 else np.nan
    buf[o + 8] = buf[row + _COUNT]
    buf[row + _EMITTED] = buf[row + _START]
    buf[row + _START] = np.nan


@on_first_call("int64(float64[::1], int64[::1], float64[:, ::1])", fastmath=False)
def _aggregate(buf, ts, trades):
    n_symbols = buf[_N_SYMBOLS]
    interval = int(buf[_INTERVAL])
    capacity = int(buf[_CAPACITY])
    state = int(buf[_STATE])
    out = int(buf[_OUT])
    if trades.shape[0] != ts.shape[0] or trades.shape[1] != 3:
        raise ValueError("trades must be (n, 3) rows of symbol, price, size with n timestamps")
    if trades.shape[0] > capacity:
        raise ValueError("more trades than the bar bank's capacity")
    n = 0
    for e in range(trades.shape[0]):
        s = trades[e, 0]
        if not (s >= 0.0 and s < n_symbols and s == np.floor(s)):
            raise ValueError("trade symbol is not an index of the bar bank")
        row = state + int(s) * _WIDTH
        price = trades[e, 1]
        size = trades[e, 2]
        seconds = ts[e] // _NS
        start = float(seconds - seconds % interval)
        if start <= buf[row + _EMITTED]:
            buf[row + _LATE] += 1.0
            continue
        open_start = buf[row + _START]
        if open_start == open_start:  # a bar is open
            if start < open_start:
                buf[row + _LATE] += 1.0
                continue
            if start > open_start:
                _emit(buf, row, out, n)
                n += 1
        if buf[row + _START] != buf[row + _START]:
            buf[row + _START] = start
            buf[row + _OPEN] = price
            buf[row + _HIGH] = price
            buf[row + _LOW] = price
            buf[row + _VOLUME] = 0.0
            buf[row + _PV] = 0.0
            buf[row + _COUNT] = 0.0
        elif price > buf[row + _HIGH]:
            buf[row + _HIGH] = price
        elif price < buf[row + _LOW]:
            buf[row + _LOW] = price
        buf[row + _CLOSE] = price
        buf[row + _VOLUME] += size
        buf[row + _PV] += price * size
        buf[row + _COUNT] += 1.0
    return n


@on_first_call("int64(float64[::1], int64)", fastmath=False)
def _flush(buf, now_ns):
    n_symbols = int(buf[_N_SYMBOLS])
    interval = buf[_INTERVAL]
    state = int(buf[_STATE])
    out = int(buf[_OUT])
    now = float(now_ns // _NS)
    n = 0
    for s in range(n_symbols):
        row = state + s * _WIDTH
        if buf[row + _START] + interval <= now:  # False while no bar is open (NaN)
            _emit(buf, row, out, n)
            n += 1
    return n


class BarBank:
    """Time bars of ``seconds`` seconds from the trades of ``symbols`` symbols."""

    def __init__(self, symbols: int, seconds: int = 60, capacity: int = 1024) -> None:
        if symbols < 1 or seconds < 1 or capacity < 1:
            raise ValueError(
                f"symbols ({symbols}), seconds ({seconds}) and capacity ({capacity}) must be >= 1"
            )
        state = _HEADER
        out = state + symbols * _WIDTH
        rows = max(capacity, symbols)  # a flush can close one bar per symbol
        self._buf = np.zeros(out + rows * len(BAR_FIELDS))
        self._buf[:_HEADER] = (symbols, seconds, capacity, state, out)
        self.seconds = seconds
        #: Per-symbol state rows (a view); column ``_LATE`` counts late trades.
        self.state: NDArray[np.float64] = self._buf[state:out].reshape(symbols, _WIDTH)
        self.state[:, _START] = np.nan
        self.state[:, _EMITTED] = -np.inf
        #: Emitted bars: after ``update`` or ``flush`` returns n, rows [:n] are the new bars.
        self.bars: NDArray[np.float64] = self._buf[out:].reshape(rows, len(BAR_FIELDS))
        _aggregate.ready()  # compiled (or loaded) now, not on the first trades
        _flush.ready()

    def update(self, ts: NDArray[np.int64], trades: NDArray[np.float64]) -> int:
        """Fold trades (rows of :data:`TRADE_FIELDS`, receive or exchange time ``ts`` in int64
        ns) into the open bars; return how many bars they closed (rows of :attr:`bars`)."""
        return int(_aggregate(self._buf, ts, trades))

    def flush(self, now_ns: int) -> int:
        """Close every open bar whose interval ended at or before ``now_ns``; return how many."""
        return int(_flush(self._buf, now_ns))

    @property
    def late(self) -> NDArray[np.float64]:
        """Per symbol, how many trades arrived after their bar had been emitted."""
        return self.state[:, _LATE]

    @staticmethod
    def trades(n: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Empty timestamp and trade arrays of ``n`` rows."""
        return np.zeros(n, dtype=np.int64), np.zeros((n, len(TRADE_FIELDS)))
