"""A fixed-size latency histogram: constant memory however long the daemon runs.

Durations in nanoseconds go into log-linear buckets (HdrHistogram's layout: each power of two is
split into 32 sub-buckets), so a percentile read back is within about 3 % of the true value, at
the cost of one ``bit_length`` and one list increment per record. Every actor keeps one for the
time it spends handling a batch; replay and the demo print their percentiles per stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LatencyHistogram"]

_SUB_BITS = 6
_SUB = 1 << _SUB_BITS  # the first 64 values exactly; above, 32 buckets per power of two
_HALF = _SUB // 2
_SIZE = (64 - _SUB_BITS + 2) * _HALF


class LatencyHistogram:
    __slots__ = ("count", "counts", "max_ns", "total_ns")

    def __init__(self) -> None:
        self.counts = [0] * _SIZE
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        ns = max(ns, 0)
        self.counts[_index(ns)] += 1
        self.count += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    def record_many(self, values: Sequence[int]) -> None:
        """Record ``values`` at once: numpy finds the buckets, so a hot path can append to a
        list (tens of ns) and fold it in later, instead of a call per value."""
        if not len(values):
            return
        ns = np.maximum(np.asarray(values, dtype=np.int64), 0)
        # frexp's exponent is the bit length (exact below 2**53 ns, about 104 days).
        magnitude = np.maximum(np.frexp(ns.astype(np.float64))[1] - _SUB_BITS, 0)
        found = np.bincount(magnitude * _HALF + (ns >> magnitude), minlength=_SIZE)
        counts = self.counts
        for index in np.flatnonzero(found).tolist():
            counts[index] += int(found[index])
        self.count += len(ns)
        self.total_ns += int(ns.sum())
        self.max_ns = max(self.max_ns, int(ns.max()))

    def percentile(self, q: float) -> int:
        """The smallest bucket value with at least ``q`` percent of the records at or below it
        (0 when empty); ``percentile(100)`` is the exact maximum."""
        if not self.count:
            return 0
        if q >= 100:
            return self.max_ns
        rank = max(1, -(-self.count * q // 100))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(_value(index), self.max_ns)
        return self.max_ns  # pragma: no cover - the counts sum to count

    def summary(self) -> dict[str, float]:
        """``n`` and p50/p90/p99/max in microseconds, as reports print them."""
        us = 1e-3
        return {
            "n": float(self.count),
            "p50_us": round(self.percentile(50) * us, 2),
            "p90_us": round(self.percentile(90) * us, 2),
            "p99_us": round(self.percentile(99) * us, 2),
            "max_us": round(self.max_ns * us, 2),
        }


def _index(ns: int) -> int:
    magnitude = max(ns.bit_length() - _SUB_BITS, 0)
    return magnitude * _HALF + (ns >> magnitude)


def _value(index: int) -> int:
    """The highest value that falls in bucket ``index``."""
    if index < _SUB:
        return index
    magnitude = (index - _HALF) // _HALF
    sub = index - magnitude * _HALF
    return ((sub + 1) << magnitude) - 1
