"""A tiny strategy host for the strategy tests: a real indicator bank, the real signal scan, and
a book of positions and working orders (test scaffolding standing in for the daemon's host and
portfolio, which live in ``daemon/``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from tests.strategies import prices
from tickd.codecs.schema import Bar, CryptoBar
from tickd.codecs.synthetic.market import Ohlcv
from tickd.strategies.base import IndicatorView, OrderIntent, SignalStrategy, Strategy
from tickd.strategies.indicators import Bank, Spec
from tickd.strategies.signals import scan

NS_PER_MINUTE = 60_000_000_000

Key = Spec | tuple[Spec, str]

#: The real daily series the trading tests run on (thousands of bars each).
DAILY = ("nvda-1999-2014.txt", "orcl-1995-2014.txt", "yhoo-1996-2014.txt")


class Columns(Mapping[Key, int]):
    """The bank's column of each of a strategy's indicator keys, looked up by equality (so these
    tests do not rest on how a :class:`Spec`, which holds a dict, is hashed)."""

    def __init__(self, pairs: Iterable[tuple[Key, int]]) -> None:
        self._pairs = list(pairs)

    def __getitem__(self, key: Key) -> int:
        for k, column in self._pairs:
            if k == key:
                return column
        raise KeyError(key)

    def __iter__(self) -> Iterator[Key]:
        return (k for k, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)


class Book:
    """Positions and working orders per symbol; the strategies' Context.

    With ``fills`` every intent fills as it is sent; without, every intent stays working."""

    def __init__(self, *, fills: bool = True) -> None:
        self.fills = fills
        self.positions: dict[str, Decimal] = {}
        self.orders: dict[str, Decimal] = {}

    def position(self, symbol: str) -> Decimal:
        return self.positions.get(symbol, Decimal(0))

    def working(self, symbol: str) -> Decimal:
        return self.orders.get(symbol, Decimal(0))

    def send(self, intent: OrderIntent) -> None:
        book = self.positions if self.fills else self.orders
        book[intent.symbol] = book.get(intent.symbol, Decimal(0)) + intent.signed_qty


@cache
def ohlcv(name: str) -> Ohlcv:
    """OHLCV arrays of one of the real price files (by file name)."""
    (path,) = (p for p in prices.ROOT.rglob(name))
    data = prices.load(Path(path))
    assert data is not None
    return data


def bars(symbol: str, data: Ohlcv) -> list[Bar]:
    """Bars of ``symbol`` from OHLCV arrays, one a minute."""
    o, h, lo, c, v = data
    return [
        Bar(
            symbol=symbol,
            ts_event=i * NS_PER_MINUTE,
            ts_recv=i * NS_PER_MINUTE + 1,
            open=float(o[i]),
            high=float(h[i]),
            low=float(lo[i]),
            close=float(c[i]),
            volume=int(v[i]),
        )
        for i in range(len(c))
    ]


def interleave(*streams: Sequence[Any]) -> list[Any]:
    """Round robin over the streams (of different lengths) until all are spent."""
    out: list[Any] = []
    for i in range(max(len(s) for s in streams)):
        out.extend(s[i] for s in streams if i < len(s))
    return out


class Host:
    """Feeds events to one strategy the way the daemon does: bars through the bank first, then
    ``on_signal`` at the signal's changes (a signal strategy) or ``on_event`` with the symbol's
    view; other events with no view. Records ``(event index, intent)`` for every intent."""

    def __init__(
        self,
        strategy: Strategy,
        universe: Sequence[str],
        *,
        book: Book | None = None,
        extra: Sequence[Spec] = (Spec("sma", {"timeperiod": 5}), Spec("macd")),
        capacity: int = 97,
    ) -> None:
        self.strategy = strategy
        self.book = book if book is not None else Book()
        self.rows = {s: i for i, s in enumerate(universe)}
        self.capacity = capacity
        # Other strategies' indicators share the bank: the strategy's columns are not 0, 1, ...
        specs = [*extra, *strategy.indicators] if strategy.indicators else list(extra)
        self.bank = Bank(specs, symbols=len(universe), capacity=capacity)
        pairs: list[tuple[Key, int]] = []
        for spec in strategy.indicators:
            outputs = spec.indicator.outputs
            if len(outputs) == 1:
                pairs.append((spec, self.bank.column(spec)))
            else:
                pairs.extend(((spec, o), self.bank.column(spec, o)) for o in outputs)
        self.columns = Columns(pairs)
        self.signal_columns = np.array([c for _, c in pairs], dtype=np.int64)
        self.member = np.array([s in strategy.symbols for s in universe])
        self.last = np.zeros(len(universe), dtype=np.int64)
        self.intents: list[tuple[int, OrderIntent]] = []
        self.signal_calls = 0
        self._seen = 0

    def _emit(self, index: int, intents: Sequence[OrderIntent]) -> None:
        for intent in intents:
            self.intents.append((index, intent))
            self.book.send(intent)

    def feed(self, events: Sequence[Any]) -> list[tuple[int, OrderIntent]]:
        """Feed events (bars in batches of up to ``capacity``); return all intents so far."""
        batch: list[tuple[int, Any]] = []
        for event in events:
            index = self._seen
            self._seen += 1
            if isinstance(event, Bar | CryptoBar) and event.symbol in self.rows:
                batch.append((index, event))
                if len(batch) == self.capacity:
                    self._bars(batch)
                    batch = []
                continue
            self._bars(batch)
            batch = []
            if type(event) in self.strategy.events:
                self._emit(index, self.strategy.on_event(event, None, self.book))
        self._bars(batch)
        return self.intents

    def _bars(self, batch: list[tuple[int, Any]]) -> None:
        if not batch:
            return
        n = len(batch)
        events = Bank.events(n)
        for i, (_, bar) in enumerate(batch):
            events[i] = (self.rows[bar.symbol], bar.high, bar.low, bar.close, bar.volume, 0.0)
        out = self.bank.update(events)
        strategy = self.strategy
        if isinstance(strategy, SignalStrategy):
            rows = events[:, 0].astype(np.int64)
            changed = np.zeros(n, dtype=np.int64)
            signals = np.zeros(n, dtype=np.int64)
            previous = self.last.tolist()  # scan updates `last` in place
            m = scan(
                strategy.signal,
                out,
                n,
                rows,
                self.member,
                self.signal_columns,
                self.last,
                changed,
                signals,
            )
            for k in range(m):
                i, signal = int(changed[k]), int(signals[k])
                index, bar = batch[i]
                row = int(rows[i])
                before, previous[row] = previous[row], signal
                self.signal_calls += 1
                view = IndicatorView(bar.symbol, out[i].copy(), self.columns)
                self._emit(index, strategy.on_signal(bar, view, signal, before, self.book))
            return
        for i, (index, bar) in enumerate(batch):
            if bar.symbol in strategy.symbols and type(bar) in strategy.events:
                view = IndicatorView(bar.symbol, out[i].copy(), self.columns)
                self._emit(index, strategy.on_event(bar, view, self.book))
