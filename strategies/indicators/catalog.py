"""What the bank and the streaming wrapper need to know about an indicator, in one record.

Each kernel module describes its indicators with :class:`Indicator`; the bank lays out state and
output columns from these records, so adding an indicator never touches the bank's Python side.

State layout shared by every streaming step: a slice of a float64 buffer starting at ``b``;
``st[b]`` counts the updates seen (the warm-up flag is ``count > lookback``), ``st[b + 1:]`` holds
the parameters in declaration order, then whatever the indicator keeps. A zero-filled slice with
the parameters written in is a fresh state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickd.strategies.indicators import inputs

#: Event columns the bank and the streaming step read, in this order.
EVENT_FIELDS = ("symbol", "high", "low", "close", "volume", "session")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter with TA-Lib's name, default and accepted range."""

    name: str
    default: float
    low: float
    high: float
    integer: bool = True

    def check(self, value: Any) -> float:
        if self.integer:
            if type(value) is int and self.low <= value <= self.high:  # the usual case
                return value
            return inputs.integer(self.name, value, int(self.low), int(self.high))
        return inputs.real(self.name, value, self.low, self.high)


def period(name: str = "timeperiod", default: int = 30, low: int = 2) -> Param:
    """An integer look-back window within TA-Lib's range."""
    return Param(name, default, low, 100_000)


def matype(name: str = "matype") -> Param:
    """TA-Lib's moving-average type; only 0 (SMA) is supported, as the bank needs one definition."""
    return Param(name, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Indicator:
    """An indicator's contract: batch function, streaming state size and look-back.

    ``step`` is the compiled streaming step the bank calls (signature of ``ema_step``);
    ``width`` and ``lookback`` take the bound parameters as keywords; ``init`` writes a fresh
    state into ``state[base:base+width]`` (the default writes the count and the parameters, see
    the module docstring).
    """

    name: str
    step: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: tuple[Param, ...]
    batch: Callable[..., Any]
    lookback: Callable[..., int]
    width: Callable[..., int]
    init: Callable[..., None] | None = None

    def bind(self, **given: Any) -> dict[str, Any]:
        """Parameters with defaults filled in and ranges checked; unknown names are an error."""
        bound = {}
        used = 0
        for p in self.params:
            if p.name in given:
                used += 1
                bound[p.name] = p.check(given[p.name])
            else:
                bound[p.name] = p.check(p.default)
        if used < len(given):
            unknown = sorted(given.keys() - bound.keys())
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}")
        return bound

    def fresh(self, state: np.ndarray, base: int, bound: Mapping[str, Any]) -> None:
        """Write a fresh state for ``bound`` parameters at ``state[base:]``."""
        state[base : base + self.width(**bound)] = 0.0
        if self.init is not None:
            self.init(state, base, **bound)
        else:
            for i, p in enumerate(self.params):
                state[base + 1 + i] = bound[p.name]
