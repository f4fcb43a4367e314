"""The indicator actor: owns the kernel bank, updates it once per batch, publishes snapshots.

A batch (what piled up in the mailbox: one or more decoded frames) becomes rows of the bank's own
event matrix and one compiled call; then each symbol the batch touched gets one
:class:`IndicatorSnapshot` with the values after its latest event, published to the strategies.
Trades feed the bank as one-price events (high = low = close); bars feed it their OHLCV. The
session column (VWAP's reset) is the UTC day of the event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Any, Literal

import numpy as np
from msgspec import Struct

from tickd.codecs.schema import Bar, CryptoBar, CryptoTrade, Trade
from tickd.strategies.indicators import Bank

from .actors import Actor, Mailbox

__all__ = ["IndicatorActor", "IndicatorSnapshot"]

_NS_PER_DAY = 86_400 * 10**9
_SYMBOL, _TS_EVENT = attrgetter("symbol"), attrgetter("ts_event")
_PRICE, _SIZE = attrgetter("price"), attrgetter("size")
_HIGH, _LOW, _CLOSE, _VOLUME = (attrgetter(name) for name in ("high", "low", "close", "volume"))


class IndicatorSnapshot(Struct, frozen=True, kw_only=True, gc=False):
    """The bank's values for ``symbol`` after the event at ``ts_event`` (column names in the
    actor's ``columns``; NaN during warm-up). ``ts_recv`` is that event's receive stamp."""

    symbol: str
    ts_event: int
    ts_recv: int
    values: tuple[float, ...]


class IndicatorActor(Actor[Any]):
    def __init__(
        self,
        mailbox: Mailbox[Any],
        bank: Bank,
        symbols: Sequence[str],
        publish: Callable[[list[Any]], Awaitable[None]],
        source: Literal["trades", "bars"] = "bars",
    ) -> None:
        super().__init__("indicators", mailbox)
        if len(symbols) > bank.state.shape[0]:
            raise ValueError(f"{len(symbols)} symbols for a bank of {bank.state.shape[0]}")
        self.bank = bank
        self.columns = bank.columns
        self.symbols = tuple(symbols)
        self.source = source
        self.ignored: Counter[str] = Counter()  # events the bank does not take, by kind
        self._index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self._publish = publish
        self._trades = source == "trades"
        self._wanted = frozenset((Trade, CryptoTrade) if self._trades else (Bar, CryptoBar))

    async def handle(self, batch: list[Any]) -> None:
        """One compiled call per bank's worth of events; the columns are gathered in C (``map``
        over attribute getters) and written into the bank's input one numpy column at a time."""
        wanted = self._wanted
        if set(map(type, batch)) <= wanted:
            rows = list(map(self._index.get, map(_SYMBOL, batch)))
            if None not in rows:
                await self._take(batch, rows)  # the usual batch: every event is for the bank
                return
        # Exact kinds: an UpdatedBar replaces a bar and a DailyBar sums a day; neither is a
        # new minute bar for the kernels. Unknown symbols and kinds are counted, not taken.
        taken, rows = [], []
        for event in batch:
            kind = type(event)
            row = self._index.get(event.symbol) if kind in wanted else None
            if row is None:
                self.ignored[kind.__name__] += 1
            else:
                taken.append(event)
                rows.append(row)
        if taken:
            await self._take(taken, rows)

    async def _take(self, events: list[Any], rows: list[int]) -> None:
        capacity = len(self.bank.input)
        for start in range(0, len(events), capacity):
            end = start + capacity
            await self._run(events[start:end], rows[start:end])

    async def _run(self, events: list[Any], rows: list[int]) -> None:
        n = len(events)
        matrix = self.bank.input
        matrix[:n, 0] = rows
        if self._trades:
            matrix[:n, 1:4] = np.fromiter(map(_PRICE, events), np.float64, n)[:, None]
            matrix[:n, 4] = np.fromiter(map(_SIZE, events), np.float64, n)
        else:
            for column, field in ((1, _HIGH), (2, _LOW), (3, _CLOSE), (4, _VOLUME)):
                matrix[:n, column] = np.fromiter(map(field, events), np.float64, n)
        matrix[:n, 5] = np.fromiter(map(_TS_EVENT, events), np.int64, n) // _NS_PER_DAY
        self.bank.run(n)
        out = self.bank.out
        latest = dict(zip(rows, range(n), strict=True))  # each symbol's last event in the batch
        snapshots = [
            IndicatorSnapshot(
                symbol=self.symbols[symbol],
                ts_event=events[row].ts_event,
                ts_recv=events[row].ts_recv,
                values=tuple(out[row].tolist()),
            )
            for symbol, row in latest.items()
        ]
        await self._publish(snapshots)
