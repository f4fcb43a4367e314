"""The indicator actor: owns the kernel bank, updates it once per batch, publishes snapshots.

A batch (what piled up in the mailbox: one or more decoded frames) becomes rows of the bank's own
event matrix and one compiled call; then each symbol the batch touched gets one
:class:`IndicatorSnapshot` with the values after its latest event, published on the bus. With a
``deliver`` target (the strategy host), each compiled call's events also go there whole, as one
:class:`IndicatorBatch` with every event's values: a strategy sees every event in order, however
the events were batched, which keeps replay deterministic.
Trades feed the bank as one-price events (high = low = close); bars feed it their OHLCV. The
session column (VWAP's reset) is the UTC day of the event.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from time import time_ns
from typing import Any, Literal

import numpy as np
from msgspec import Struct
from numpy.typing import NDArray

from tickd.codecs.schema import Bar, CryptoBar, CryptoTrade, Trade
from tickd.strategies.indicators import Bank

from .actors import Actor, Mailbox
from .tracing import Tracing

__all__ = ["IndicatorActor", "IndicatorBatch", "IndicatorSnapshot"]

_NS_PER_DAY = 86_400 * 10**9
_WIDTH = 6  # the bank's event columns: symbol, high, low, close, volume, session
_PACK_EVENT = struct.Struct(f"={_WIDTH}d").pack_into  # one event's row, into the matrix's memory


class IndicatorSnapshot(Struct, frozen=True, kw_only=True, gc=False):
    """The bank's values for ``symbol`` after the event at ``ts_event`` (column names in the
    actor's ``columns``; NaN during warm-up). ``ts_recv`` is that event's receive stamp."""

    symbol: str
    ts_event: int
    ts_recv: int
    values: tuple[float, ...]


class IndicatorBatch(Struct, kw_only=True):
    """The events of one compiled call, in order: ``rows[i]`` is ``events[i]``'s symbol row in
    the bank and ``values[i]`` the bank's output after it (a copy: the bank reuses its own)."""

    events: list[Any]
    rows: NDArray[np.int64]
    values: NDArray[np.float64]
    bank_start_ns: int = 0  # the compiled call's wall-clock start and end (tracing's stamps)
    bank_end_ns: int = 0


class IndicatorActor(Actor[Any]):
    pack_max = 32  # the most trades a batch may hold to be packed event by event

    def __init__(
        self,
        mailbox: Mailbox[Any],
        bank: Bank,
        symbols: Sequence[str],
        publish: Callable[[list[Any]], Awaitable[None]],
        source: Literal["trades", "bars"] = "bars",
        deliver: Callable[[list[Any]], Awaitable[None]] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        super().__init__("indicators", mailbox)
        self.tracing = tracing
        if len(symbols) > bank.state.shape[0]:
            raise ValueError(f"{len(symbols)} symbols for a bank of {bank.state.shape[0]}")
        self.bank = bank
        self.columns = bank.columns
        self.symbols = tuple(symbols)
        self.source = source
        self.ignored: Counter[str] = Counter()  # events the bank does not take, by kind
        self._index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self._publish = publish
        self._deliver = deliver
        self._trades = source == "trades"
        self._wanted = frozenset((Trade, CryptoTrade) if self._trades else (Bar, CryptoBar))
        if bank.input.shape[1] != _WIDTH or not bank.input.flags.c_contiguous:
            raise ValueError("the bank's input must be a C-ordered matrix of 6 columns")
        self._memory = bank.input.data.cast("B")  # row-major, 6 float64 per event
        self._flat = self._memory.cast("d")
        self._day = (0, 0, 0)  # the UTC day last seen: (start ns, end ns, day number)
        self._last_bar = [-1] * len(self.symbols)  # per symbol, the time of the last bar taken
        self.stale = 0  # bars at or before the last one taken for their symbol, left out

    async def handle(self, batch: list[Any]) -> None:
        """One pass over the batch writes what differs per event (symbol row, close, volume; a
        bar's high and low) through a flat view of the bank's input, no numpy call per event;
        the columns every event of a chunk shares a rule for (a trade's high = low = close, the
        UTC day) are filled by numpy afterwards. One compiled call per bank's worth of events.
        A batch of trades the bank takes whole (the live feeds' usual batch) is read whole
        instead, a bank's worth at a time: see :meth:`_take_trades`."""
        index, wanted, flat = self._index, self._wanted, self._flat
        capacity = len(flat) // _WIDTH
        if self._trades and wanted.issuperset(map(type, batch)):
            try:
                rows = [index[event.symbol] for event in batch]
            except KeyError:  # a symbol the bank does not keep: the pass below counts it
                pass
            else:
                for start in range(0, len(batch), capacity):
                    end = start + capacity
                    await self._take_trades(batch[start:end], rows[start:end])
                return
        trades, last_bar = self._trades, self._last_bar
        taken: list[Any] = []
        latest: dict[int, int] = {}  # symbol row -> position in ``taken`` of its latest event
        day_start, day_end, day = self._day
        days = [(0, day)]  # (first position, UTC day) of each run of one day in the chunk
        at = 0
        for event in batch:
            kind = type(event)
            # Exact kinds: an UpdatedBar replaces a bar and a DailyBar sums a day; neither is
            # a new minute bar for the kernels.
            row = index.get(event.symbol) if kind in wanted else None
            if row is None:
                self.ignored[kind.__name__] += 1
                continue
            ts = event.ts_event
            if trades:
                flat[at + 3] = event.price
                flat[at + 4] = event.size
            elif ts <= last_bar[row]:
                # A bar the bank already has (a gap's REST backfill overlaps the live stream)
                # or an older one: taking it twice would skew every average.
                self.stale += 1
                continue
            else:
                last_bar[row] = ts
                flat[at + 1] = event.high
                flat[at + 2] = event.low
                flat[at + 3] = event.close
                flat[at + 4] = event.volume
            flat[at] = row
            if not day_start <= ts < day_end:  # the session column: the event's UTC day
                day = ts // _NS_PER_DAY
                day_start, day_end = day * _NS_PER_DAY, (day + 1) * _NS_PER_DAY
                days.append((len(taken), day))
            latest[row] = len(taken)
            taken.append(event)
            at += _WIDTH
            if len(taken) == capacity:
                await self._run(taken, latest, days)
                taken, latest, days, at = [], {}, [(0, day)], 0
        self._day = (day_start, day_end, day)
        if taken:
            await self._run(taken, latest, days)

    async def _take_trades(self, batch: list[Any], rows: list[int]) -> None:
        """Trades of symbols the bank keeps, no more than it holds. Up to ``pack_max`` of them
        (a frame or two: the live feeds at ordinary rates), each event's whole row is packed
        into the matrix's memory by one call; numpy calls (about 1 us each, more when the
        wake-up that brought the batch left the caches cold) would cost more than the events.
        More (a backlog, a replay), each field is gathered by one comprehension and written by
        one numpy call (13 % less a batch of 100 than the general pass, which needs per-event
        branches for other kinds and stale bars)."""
        n, matrix = len(batch), self.bank.input
        if n <= self.pack_max:
            pack, memory, size = _PACK_EVENT, self._memory, _WIDTH * 8
            for at, event, row in zip(range(0, n * size, size), batch, rows, strict=True):
                price = event.price
                day = event.ts_event // _NS_PER_DAY  # the session column: the event's UTC day
                pack(memory, at, row, price, price, price, event.size, day)
        else:
            matrix[:n, 0] = rows
            matrix[:n, 3] = [event.price for event in batch]
            matrix[:n, 4] = [event.size for event in batch]
            ts = np.array([event.ts_event for event in batch], dtype=np.int64)
            matrix[:n, 5] = ts // _NS_PER_DAY
        latest = dict(zip(rows, range(n), strict=True))  # row -> position of its latest event
        await self._run(batch, latest, None, one_price=n > self.pack_max)

    async def _run(
        self,
        taken: list[Any],
        latest: dict[int, int],
        days: list[tuple[int, int]] | None,
        one_price: bool = True,
    ) -> None:
        """The compiled call over ``taken`` and the snapshots; ``days`` are the runs of one UTC
        day for the session column (None: the column is filled); ``one_price``: trades' high and
        low columns are still to be set to the close (False: they are)."""
        n, matrix = len(taken), self.bank.input
        tracing = self.tracing
        started = time_ns() if tracing is not None else 0
        if self._trades and one_price:  # one price: high = low = close
            matrix[:n, 1] = matrix[:n, 3]
            matrix[:n, 2] = matrix[:n, 3]
        if days is not None:
            for (first, day), (end, _) in zip(days, [*days[1:], (n, 0)], strict=True):
                matrix[first:end, 5] = day
        self.bank.run(n)
        out, positions = self.bank.out, list(latest.values())
        ended = 0
        if tracing is not None:
            ended = time_ns()
            tracing.banked(taken, ended)
            if self._deliver is None:  # the bank is the events' last stage
                tracing.finished([(taken, (started, ended))], ended)
        if self._deliver is not None:
            rows = matrix[:n, 0].astype(np.int64)
            batch = IndicatorBatch(
                events=taken,
                rows=rows,
                values=out[:n].copy(),
                bank_start_ns=started,
                bank_end_ns=ended,
            )
            await self._deliver([batch])
        if n <= 64:  # one numpy call converts the lot (cheaper than one per snapshot)
            rows = out[:n].tolist()
            values = [rows[at] for at in positions]
        else:  # a backlog: only the few rows that become snapshots
            values = [out[at].tolist() for at in positions]
        symbols = self.symbols
        await self._publish(
            [
                IndicatorSnapshot(
                    symbol=symbols[row],
                    ts_event=taken[at].ts_event,
                    ts_recv=taken[at].ts_recv,
                    values=tuple(value),
                )
                for row, at, value in zip(latest, positions, values, strict=True)
            ]
        )
