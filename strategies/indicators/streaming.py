"""One indicator, one value at a time, for scripts and notebooks.

A :class:`Stream` is a one-symbol bank: its state is a small float64 array (:attr:`Stream.state`)
and :meth:`Stream.update` takes one bar or tick and returns the new value. Compiled code that
wants the step itself calls the module's ``<name>_step`` on a state laid out by
:meth:`catalog.Indicator.fresh`; the daemon uses :class:`bank.Bank`, which pays one call into
numba per batch of events rather than one per value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tickd.strategies.indicators.bank import Bank, Spec


class Stream:
    """Streaming form of the indicator ``name`` with TA-Lib-named ``params``."""

    def __init__(self, name: str, **params: Any) -> None:
        self.spec = Spec(name, params)
        self._bank = Bank([self.spec], symbols=1, capacity=1)
        self._event = self._bank.input[0]
        self._out = self._bank.out[0]
        self.outputs = self.spec.indicator.outputs

    @property
    def state(self) -> NDArray[np.float64]:
        """The whole state of this indicator (a view: copy it to checkpoint)."""
        return self._bank.state[0]

    @property
    def ready(self) -> bool:
        """True once enough values were seen for the output to be defined (past warm-up)."""
        return bool(self._bank.ready(0)[0])

    def update(
        self,
        close: float,
        high: float | None = None,
        low: float | None = None,
        volume: float = 0.0,
        session: float = 0.0,
    ) -> float | tuple[float, ...]:
        """Feed one bar (or a tick: high and low default to ``close``); return the new value,
        or a tuple in TA-Lib's output order for multi-output indicators. NaN during warm-up."""
        ev = self._event
        ev[1] = close if high is None else high
        ev[2] = close if low is None else low
        ev[3] = close
        ev[4] = volume
        ev[5] = session
        self._bank.run(1)
        row = self._out
        if len(self.outputs) == 1:
            return float(row[0])
        return tuple(float(v) for v in row)

    def reset(self) -> None:
        """Back to a fresh state."""
        self._bank.reset()
