"""A reliability figure is a benchmark :class:`~bench.harness.Row` whose target is a bound on the
value itself (``<= 0.5 s``, ``== 0 duplicates``), not a ratio against a peer."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Sequence
from typing import Final

from bench.harness import Row

__all__ = ["figure", "percentile"]

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}


def figure(
    metric: str, value: float, unit: str, op: str | None = None, goal: float | None = None
) -> Row:
    """One row; with ``op`` and ``goal`` its target (``"<= 0.5 s"``) and whether it is met."""
    if op is None or goal is None:
        return Row(metric, value, unit)
    met = _OPS[op](value, goal)
    return Row(metric, value, unit, target=f"{op} {goal:g} {unit}", meets_target=met)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; the median of one value is it."""
    if not values:
        raise ValueError("no values")
    if len(values) == 1:
        return float(values[0])
    if q == 50:
        return float(statistics.median(values))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return float(cuts[min(98, max(0, round(q) - 1))])
