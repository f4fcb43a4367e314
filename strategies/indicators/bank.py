"""The indicator bank: one compiled call updates every configured indicator for a batch of events.

The daemon's indicator actor calls :meth:`Bank.update` once per decoded frame. A call into numba
costs a few hundred nanoseconds of argument unboxing, so the bank keeps everything it owns (plan,
per-symbol state, output rows) in one float64 buffer and the call takes just that buffer and the
events: two arguments, whatever the number of indicators.

Events are rows of a float64 matrix with the columns of :data:`catalog.EVENT_FIELDS`: symbol index,
high, low, close (the price for a trade), volume (the size), session id (for VWAP's reset). A
trade is an event with high = low = close.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from tickd.strategies.indicators import (
    averages,
    directional,
    momentum,
    stochastic,
    volatility,
)
from tickd.strategies.indicators import volume as volumes
from tickd.strategies.indicators.catalog import EVENT_FIELDS, Indicator
from tickd.strategies.indicators.jit import compiled, step

_MODULES = (averages, momentum, stochastic, directional, volatility, volumes)
CATALOG: dict[str, Indicator] = {i.name: i for m in _MODULES for i in m.INDICATORS}

# Buffer header: where each region starts and how big it is.
_N_SPECS, _N_SYMBOLS, _STRIDE, _CAPACITY, _N_OUT, _PLAN, _STATE, _OUT = range(8)
_HEADER = 8
_PLAN_WIDTH = 3  # kind, state offset within a symbol's row, output column


class Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An indicator the bank should keep: a catalog name and TA-Lib-named parameters."""

    name: str
    params: dict[str, float] = {}

    @property
    def indicator(self) -> Indicator:
        try:
            return CATALOG[self.name]
        except KeyError:
            raise ValueError(
                f"unknown indicator {self.name!r}; known: {', '.join(sorted(CATALOG))}"
            ) from None

    def bound(self) -> dict[str, Any]:
        """Parameters with defaults filled in; a ``ValueError`` if any is out of range."""
        return self.indicator.bind(**self.params)

    @property
    def label(self) -> str:
        args = ",".join(f"{k}={v:g}" for k, v in self.bound().items())
        return f"{self.name}({args})"


@step
def _dispatch(kind, st, b, high, low, close, volume, session, out, o):
    if kind < 200:
        averages.dispatch(kind, st, b, high, low, close, volume, session, out, o)
    elif kind < 300:
        momentum.dispatch(kind, st, b, high, low, close, volume, session, out, o)
    elif kind < 400:
        stochastic.dispatch(kind, st, b, high, low, close, volume, session, out, o)
    elif kind < 500:
        directional.dispatch(kind, st, b, high, low, close, volume, session, out, o)
    elif kind < 600:
        volatility.dispatch(kind, st, b, high, low, close, volume, session, out, o)
    else:
        volumes.dispatch(kind, st, b, high, low, close, volume, session, out, o)


@compiled("void(float64[::1], float64[:, ::1])")
def _run(buf, events):
    n_specs = int(buf[_N_SPECS])
    n_symbols = buf[_N_SYMBOLS]
    stride = int(buf[_STRIDE])
    n_out = int(buf[_N_OUT])
    plan = int(buf[_PLAN])
    state = int(buf[_STATE])
    outs = int(buf[_OUT])
    if events.shape[0] > buf[_CAPACITY]:
        raise ValueError("more events than the bank's capacity")
    if events.shape[1] != 6:
        raise ValueError("events must have 6 columns: symbol, high, low, close, volume, session")
    for e in range(events.shape[0]):
        s = events[e, 0]
        if not (s >= 0.0 and s < n_symbols and s == np.floor(s)):
            raise ValueError("event symbol is not an index of the bank")
        row = state + int(s) * stride
        high = events[e, 1]
        low = events[e, 2]
        close = events[e, 3]
        vol = events[e, 4]
        session = events[e, 5]
        o = outs + e * n_out
        for j in range(n_specs):
            p = plan + _PLAN_WIDTH * j
            _dispatch(
                int(buf[p]),
                buf,
                row + int(buf[p + 1]),
                high,
                low,
                close,
                vol,
                session,
                buf,
                o + int(buf[p + 2]),
            )


class Bank:
    """Indicator state for many symbols, updated by one compiled call per batch of events."""

    def __init__(self, specs: Iterable[Spec], symbols: int, capacity: int = 1024) -> None:
        self.specs = tuple(specs)
        if not self.specs:
            raise ValueError("a bank needs at least one indicator spec")
        if symbols < 1 or capacity < 1:
            raise ValueError(f"symbols ({symbols}) and capacity ({capacity}) must be >= 1")
        bound = [s.bound() for s in self.specs]
        widths = [s.indicator.width(**b) for s, b in zip(self.specs, bound, strict=True)]
        self._bases = np.cumsum([0, *widths[:-1]]).tolist()
        self._lookbacks = np.array(
            [s.indicator.lookback(**b) for s, b in zip(self.specs, bound, strict=True)]
        )
        columns: list[str] = []
        first_column: list[int] = []
        for spec in self.specs:
            first_column.append(len(columns))
            outputs = spec.indicator.outputs
            if len(outputs) == 1:
                columns.append(spec.label)
            else:
                columns.extend(f"{spec.label}.{name}" for name in outputs)
        self.columns = tuple(columns)
        self._first_column = first_column
        stride = sum(widths)
        n_plan = _PLAN_WIDTH * len(self.specs)
        plan = _HEADER
        state = plan + n_plan
        outs = state + symbols * stride
        self._buf = np.zeros(outs + capacity * len(columns))
        self._buf[:_HEADER] = (
            len(self.specs),
            symbols,
            stride,
            capacity,
            len(columns),
            plan,
            state,
            outs,
        )
        for j, spec in enumerate(self.specs):
            self._buf[plan + _PLAN_WIDTH * j : plan + _PLAN_WIDTH * (j + 1)] = (
                spec.indicator.kind,
                self._bases[j],
                first_column[j],
            )
        #: Per-symbol state rows (a view into the bank's buffer).
        self.state: NDArray[np.float64] = self._buf[state:outs].reshape(symbols, stride)
        #: Output rows: after ``update(events)``, row i holds the values after event i.
        self.out: NDArray[np.float64] = self._buf[outs:].reshape(capacity, len(columns))
        self._bound = bound
        self.reset()

    def update(self, events: NDArray[np.float64]) -> NDArray[np.float64]:
        """Feed ``events`` (float64, C-contiguous, shape (n, 6)); return :attr:`out`, of which
        the first n rows are valid."""
        _run(self._buf, events)
        return self.out

    def column(self, spec: Spec, output: str | None = None) -> int:
        """Index in :attr:`out` of ``spec``'s output (by TA-Lib's output name if several)."""
        j = self.specs.index(spec)
        outputs = spec.indicator.outputs
        if output is None:
            if len(outputs) > 1:
                raise ValueError(f"{spec.label} has outputs {outputs}: name one")
            return self._first_column[j]
        if output not in outputs:
            raise ValueError(f"{spec.label} has outputs {outputs}, not {output!r}")
        return self._first_column[j] + outputs.index(output)

    def ready(self, symbol: int) -> NDArray[np.bool_]:
        """Per spec: whether ``symbol`` has seen enough events for a value (past warm-up)."""
        return self.state[symbol, self._bases] > self._lookbacks  # type: ignore[no-any-return]

    def reset(self, symbol: int | None = None) -> None:
        """Fresh state for one symbol, or for all."""
        rows = range(self.state.shape[0]) if symbol is None else (symbol,)
        for r in rows:
            row = self.state[r]
            for spec, base, bound in zip(self.specs, self._bases, self._bound, strict=True):
                spec.indicator.fresh(row, base, bound)

    @staticmethod
    def events(n: int) -> NDArray[np.float64]:
        """An empty event matrix of ``n`` rows in the bank's column order."""
        return np.zeros((n, len(EVENT_FIELDS)))


def specs(items: Iterable[tuple[str, Mapping[str, float]] | str]) -> list[Spec]:
    """Specs from ``"ema"`` or ``("ema", {"timeperiod": 12})`` items, for short configuration."""
    return [Spec(i) if isinstance(i, str) else Spec(i[0], dict(i[1])) for i in items]
