"""The signal scan: one compiled pass over a batch of the bank's output for a signal strategy.

The strategy's ``signal`` function (numba) maps one output row to a small integer; the scan
runs it for every event of the strategy's symbols and records only the rows where a symbol's
signal differs from the one before, so Python runs per change, not per event.

It is compiled once per process and strategy signal, not cached on disk: numba's cache keys a
function-typed argument by the dispatcher object, so every process missed the cache, appended
to its index, and once the index held a signal not loaded in this process, saving failed
("underlying object has vanished") and crashed the strategy host.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["scan"]


@njit(nogil=True)
def scan(
    signal: Callable[..., int],
    out: NDArray[np.float64],
    n: int,
    rows: NDArray[np.int64],
    member: NDArray[np.bool_],
    columns: NDArray[np.int64],
    last: NDArray[np.int64],
    changed: NDArray[np.int64],
    signals: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled (its behaviour is tested through the host)
    """For events ``0..n``: ``rows[i]`` is the event's symbol row in the bank, ``member`` marks
    the strategy's rows, ``last`` holds each row's latest signal (updated in place). Writes the
    positions of changes to ``changed`` and their new signals to ``signals``; returns how many."""
    m = 0
    for i in range(n):
        row = rows[i]
        if not member[row]:
            continue
        value = signal(out[i], columns)
        if value != last[row]:
            changed[m] = i
            signals[m] = value
            last[row] = value
            m += 1
    return m
