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
from typing import Any, Literal

from msgspec import Struct

from tickd.codecs.schema import Bar, CryptoBar, CryptoTrade, Trade
from tickd.strategies.indicators import Bank

from .actors import Actor, Mailbox

__all__ = ["IndicatorActor", "IndicatorSnapshot"]

_NS_PER_DAY = 86_400 * 10**9


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

    async def handle(self, batch: list[Any]) -> None:
        rows, index = self.bank.input, self._index
        capacity = len(rows)
        latest: dict[int, tuple[int, Any]] = {}
        n = 0
        for event in batch:
            symbol = index.get(getattr(event, "symbol", None))  # type: ignore[arg-type]
            kind = type(event)
            if symbol is None:
                self.ignored[kind.__name__] += 1
                continue
            # Exact kinds: an UpdatedBar replaces a bar and a DailyBar sums a day; neither is
            # a new minute bar for the kernels.
            if self._trades and (kind is Trade or kind is CryptoTrade):
                price = event.price
                rows[n] = (symbol, price, price, price, event.size, event.ts_event // _NS_PER_DAY)
            elif not self._trades and (kind is Bar or kind is CryptoBar):
                rows[n] = (
                    symbol,
                    event.high,
                    event.low,
                    event.close,
                    event.volume,
                    event.ts_event // _NS_PER_DAY,
                )
            else:
                self.ignored[kind.__name__] += 1
                continue
            latest[symbol] = (n, event)
            n += 1
            if n == capacity:
                await self._flush(n, latest)
                latest, n = {}, 0
        if n:
            await self._flush(n, latest)

    async def _flush(self, n: int, latest: dict[int, tuple[int, Any]]) -> None:
        self.bank.run(n)
        out = self.bank.out
        snapshots = [
            IndicatorSnapshot(
                symbol=self.symbols[symbol],
                ts_event=event.ts_event,
                ts_recv=event.ts_recv,
                values=tuple(out[row].tolist()),
            )
            for symbol, (row, event) in latest.items()
        ]
        await self._publish(snapshots)
