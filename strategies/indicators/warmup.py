"""Compile every kernel up front (or load it from numba's on-disk cache).

The daemon calls :func:`compile_all` before it reports ready, so the first live event does not
pay a compile; ``python -m bench kernels`` times it cold and cached.
"""

from __future__ import annotations

import time

import numpy as np

from tickd.strategies.indicators.bank import CATALOG, Bank, Spec
from tickd.strategies.indicators.bars import BarBank


def compile_all() -> float:
    """Run every batch kernel, the bank (every indicator) and the bar kernel once on a short
    series, with the argument types the public functions pass; return the seconds it took."""
    start = time.perf_counter()
    n = 64
    close = 100.0 + np.sin(np.arange(n) / 5.0)
    fields = {
        "high": close + 1.0,
        "low": close - 1.0,
        "close": close,
        "volume": np.full(n, 1000.0),
        "session": np.repeat([0.0, 1.0], n // 2),
    }
    for indicator in CATALOG.values():
        indicator.batch(*(fields[name] for name in indicator.inputs))
    bank = Bank([Spec(name) for name in CATALOG], symbols=1, capacity=n)
    events = Bank.events(n)
    events[:, 1:] = np.column_stack(
        [fields[f] for f in ("high", "low", "close", "volume")] + [fields["session"]]
    )
    bank.update(events)
    bars = BarBank(1)
    bars.update(*BarBank.trades(1))
    bars.flush(0)
    return time.perf_counter() - start
