"""Compile every kernel up front (or load it from numba's on-disk cache).

The daemon calls :func:`compile_all` with its bank's specs before it reports ready, so the first
live event does not pay a compile; ``python -m bench kernels`` times it cold and cached. Run as
``python -m tickd.strategies.indicators.warmup [--streams]`` it fills the cache from the command
line (the tests do this in a process coverage does not trace: tracing numba's compiler, which is
Python, makes compiling several times slower).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

import numpy as np

from tickd.strategies.indicators.bank import CATALOG, Bank, Spec
from tickd.strategies.indicators.bars import BarBank
from tickd.strategies.indicators.streaming import Stream


def compile_all(specs: Iterable[Spec] | None = None) -> float:
    """Run every batch kernel, the bank loop for ``specs`` (default: every indicator, in catalog
    order) and the bar kernel once on a short series, with the argument types the public
    functions pass; return the seconds it took."""
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
    bank = Bank([Spec(name) for name in CATALOG] if specs is None else specs, symbols=1, capacity=n)
    events = Bank.events(n)
    events[:, 1:] = np.column_stack(
        [fields[f] for f in ("high", "low", "close", "volume")] + [fields["session"]]
    )
    bank.update(events)
    bars = BarBank(1)
    bars.update(*BarBank.trades(1))
    bars.flush(0)
    return time.perf_counter() - start


def compile_streams() -> float:
    """Build the one-indicator bank loop every :class:`Stream` runs; return the seconds."""
    start = time.perf_counter()
    for name in CATALOG:
        Stream(name).update(100.0, high=101.0, low=99.0, volume=1000.0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", action="store_true", help="also every Stream's bank loop")
    args = parser.parse_args(argv)
    seconds = compile_all()
    if args.streams:
        seconds += compile_streams()
    print(f"kernels ready in {seconds:.1f} s")


if __name__ == "__main__":
    main()
