"""The strategy host: the actor that runs strategies and passes their intents to risk.

It receives :class:`~tickd.daemon.indicators.IndicatorBatch` objects from the indicator actor (the
events the bank took, each with the bank's values after it) and, through the bus, the other event
kinds its strategies asked for (news, quotes, order updates, ...). For each strategy:

- a :class:`~tickd.strategies.base.SignalStrategy` gets one compiled scan of the batch
  (:func:`~tickd.strategies.signals.scan`) and a Python call only where a symbol's signal
  changes;
- a plain :class:`~tickd.strategies.base.Strategy` gets ``on_event`` for each event of its
  symbols and kinds.

A strategy that raises is logged with the event and counted; the others go on, and so does the
daemon. While ``paused()`` says so (a reconciliation with the broker is replacing local state)
the host waits before deciding: strategies resume on the state the venue confirmed, and the
events wait in the mailbox. Each intent passed on counts in the portfolio as working until risk
judges it (:meth:`~tickd.daemon.portfolio.Portfolio.intend`): a strategy deciding again on the
next bar of the same batch, before risk has run, sees its first decision. Intents from events
before ``trade_after_ns`` (just after the last bar a warm-up fed from history; 0 without one) are
counted and dropped: warm-up primes indicators and strategy state, it never trades. (A cut by the
clock would also drop the first live bar, whose time is the start of its minute, and every bar of
a delayed feed.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from time import time_ns
from typing import Any, cast

import anyio
import numpy as np
import structlog
from numpy.typing import NDArray

from tickd.codecs.schema import News
from tickd.strategies.base import (
    IndicatorView,
    OrderIntent,
    SignalStrategy,
    Strategy,
)
from tickd.strategies.indicators import Bank, Spec
from tickd.strategies.signals import scan

from .actors import Actor, Mailbox
from .indicators import IndicatorBatch
from .portfolio import Portfolio
from .tracing import Tracing

__all__ = ["HostedStrategy", "StrategyHost"]

_log = structlog.get_logger("tickd.strategies")


class HostedStrategy:
    """A strategy bound to the bank: which rows are its symbols, which columns its specs."""

    def __init__(self, strategy: Strategy, bank: Bank, symbols: Sequence[str]) -> None:
        self.strategy = strategy
        rows = {s: i for i, s in enumerate(symbols)}
        self.member: NDArray[np.bool_] = np.zeros(len(symbols), dtype=np.bool_)
        for symbol in strategy.symbols:
            if symbol not in rows:
                raise ValueError(f"strategy {strategy.name!r}: {symbol} is not a daemon symbol")
            self.member[rows[symbol]] = True
        self.symbols = frozenset(strategy.symbols)
        self.news_symbols = self.symbols | {s.replace("/", "") for s in self.symbols}
        self.columns: dict[Spec | tuple[Spec, str], int] = {}
        for spec in strategy.indicators:
            outputs = spec.indicator.outputs
            if len(outputs) == 1:
                self.columns[spec] = bank.column(spec)
            else:
                for output in outputs:
                    self.columns[spec, output] = bank.column(spec, output)
        self.column_array = np.array(list(self.columns.values()), dtype=np.int64)
        self.signal = isinstance(strategy, SignalStrategy)
        self.last = np.zeros(len(symbols), dtype=np.int64)  # latest signal per bank row


class StrategyHost(Actor[Any]):
    def __init__(
        self,
        mailbox: Mailbox[Any],
        strategies: Sequence[Strategy],
        bank: Bank,
        symbols: Sequence[str],
        context: Portfolio,
        send: Callable[[list[Any]], Awaitable[None]],
        trade_after_ns: int = 0,
        paused: Callable[[], bool] = lambda: False,
        tracing: Tracing | None = None,
    ) -> None:
        super().__init__("strategies", mailbox)
        self.tracing = tracing
        self.hosted = [HostedStrategy(s, bank, symbols) for s in strategies]
        self.symbols = tuple(symbols)
        self.context = context
        self.trade_after_ns = trade_after_ns
        self.intents = 0
        self.warmup_intents = 0  # decided on history, dropped
        self.invalid_intents = 0  # for a symbol the strategy does not trade
        self.errors: Counter[str] = Counter()  # by strategy
        self._send = send
        self._paused = paused
        capacity = bank.input.shape[0]
        self._changed = np.zeros(capacity, dtype=np.int64)
        self._signals = np.zeros(capacity, dtype=np.int64)
        # Compile each signal strategy's scan now, as the bank is compiled before anything
        # connects, not on the first live bar (a few hundred ms).
        nothing = np.zeros((0, len(bank.columns)), dtype=np.float64)
        for hosted in self.hosted:
            if hosted.signal:
                signal = cast(SignalStrategy, hosted.strategy).signal
                scan(
                    signal,
                    nothing,
                    0,
                    self._changed[:0],
                    hosted.member,
                    hosted.column_array,
                    hosted.last,
                    self._changed,
                    self._signals,
                )

    async def handle(self, batch: list[Any]) -> None:
        while self._paused():  # reconciling: decide on the state the venue confirms, after
            await anyio.sleep(0.01)
        intents: list[OrderIntent] = []
        try:
            await self._decide(batch, intents)
        except BaseException:
            # Not passed on (a crash, a cancellation): they will never be judged, so they must
            # stop counting as working, or their strategies would wait on them for ever.
            for intent in intents:
                self.context.settle(intent)
            raise

    async def _decide(self, batch: list[Any], intents: list[OrderIntent]) -> None:
        started = time_ns() if self.tracing is not None else 0
        groups: list[tuple[list[Any], tuple[int, int] | None]] = []  # for tracing
        others: list[Any] = []  # what came without a bank call
        for item in batch:
            if type(item) is IndicatorBatch:
                for hosted in self.hosted:
                    if hosted.signal:
                        self._scan(hosted, item, intents)
                    else:
                        self._each(hosted, item, intents)
                groups.append((item.events, (item.bank_start_ns, item.bank_end_ns)))
            else:
                for hosted in self.hosted:
                    strategy = hosted.strategy
                    if type(item) in strategy.events and self._concerns(hosted, item):
                        self._call(hosted, item, intents, strategy.on_event, item, None)
                others.append(item)
        if self.tracing is not None:
            ended = time_ns()
            self.tracing.finished([*groups, (others, None)], ended, strategy=(started, ended))
        if intents:
            self.intents += len(intents)
            await self._send(list(intents))

    @staticmethod
    def _concerns(hosted: HostedStrategy, event: Any) -> bool:
        symbol = getattr(event, "symbol", None)
        if type(event) is News:  # crypto pairs appear without the slash in news (BTCUSD)
            return not hosted.news_symbols.isdisjoint(event.symbols)
        if symbol is None:  # an event for every strategy (e.g. an order update's order)
            order = getattr(event, "order", None)
            return order is None or order.symbol in hosted.symbols
        return symbol in hosted.symbols

    def _scan(self, hosted: HostedStrategy, batch: IndicatorBatch, intents: list[Any]) -> None:
        # Checked once when hosted (hosted.signal): a Protocol isinstance costs ~50 us a call.
        strategy = cast(SignalStrategy, hosted.strategy)
        running = hosted.last.copy()  # each row's signal before this batch, kept current
        changes = scan(
            strategy.signal,
            batch.values,
            len(batch.events),
            batch.rows,
            hosted.member,
            hosted.column_array,
            hosted.last,
            self._changed,
            self._signals,
        )
        for k in range(changes):
            at = int(self._changed[k])
            row = int(batch.rows[at])
            signal, before = int(self._signals[k]), int(running[row])
            running[row] = signal
            event = batch.events[at]
            view = IndicatorView(event.symbol, batch.values[at], hosted.columns)
            self._call(
                hosted,
                event,
                intents,
                strategy.on_signal,
                event,
                view,
                signal,
                before,
                of=(batch, at),
            )

    def _each(self, hosted: HostedStrategy, batch: IndicatorBatch, intents: list[Any]) -> None:
        strategy = hosted.strategy
        kinds, member, rows, values = strategy.events, hosted.member, batch.rows, batch.values
        for at, event in enumerate(batch.events):
            if member[rows[at]] and type(event) in kinds:
                view = IndicatorView(event.symbol, values[at], hosted.columns)
                self._call(hosted, event, intents, strategy.on_event, event, view, of=(batch, at))

    def _call(
        self,
        hosted: HostedStrategy,
        event: Any,
        intents: list[Any],
        method: Callable[..., Sequence[OrderIntent]],
        *args: Any,
        of: tuple[IndicatorBatch, int] | None = None,
    ) -> None:
        """Run one strategy handler; ``of`` is the bank call and position of ``event``."""
        strategy, tracing = hosted.strategy, self.tracing
        started = time_ns() if tracing is not None else 0
        try:
            decided = list(method(*args, self.context))  # a generator raises while read
        except Exception:
            self.errors[strategy.name] += 1
            _log.exception("strategy_error", strategy=strategy.name, on=repr(event)[:300])
            return
        accepted = len(intents)
        for intent in decided:
            if intent.symbol not in hosted.symbols or intent.strategy != strategy.name:
                self.invalid_intents += 1
                _log.error(
                    "strategy_intent_invalid",
                    strategy=strategy.name,
                    intent_strategy=intent.strategy,
                    symbol=intent.symbol,
                )
            elif intent.ts_event < self.trade_after_ns:
                self.warmup_intents += 1
            else:
                intents.append(intent)
                self.context.intend(intent)  # the next decision sees it, before risk does
        if len(intents) > accepted:
            if tracing is not None:
                self._trace(tracing, event, intents[accepted:], started, of)
            for intent in intents[accepted:]:  # a decision: logged, with its trace
                _log.info(
                    "strategy_decided",
                    strategy=strategy.name,
                    symbol=intent.symbol,
                    side=intent.side,
                    qty=str(intent.qty),
                    reason=intent.reason,
                    event_id=intent.event_id,
                    **(tracing.context(intent, "strategy") if tracing is not None else {}),
                )

    @staticmethod
    def _trace(
        tracing: Tracing,
        event: Any,
        decided: Sequence[OrderIntent],
        started: int,
        of: tuple[IndicatorBatch, int] | None,
    ) -> None:
        """Note a decision for its trace: links to the earlier events of its symbol that the
        same bank call took (their values fed the one decided on)."""
        bank: tuple[int, int] | None = None
        links: list[Any] = []
        if of is not None:
            batch, at = of
            bank = (batch.bank_start_ns, batch.bank_end_ns)
            rows, row = batch.rows, batch.rows[at]
            for i in range(at - 1, -1, -1):
                if rows[i] == row:
                    links.append(batch.events[i])
                    if len(links) == 8:  # tracing keeps no more
                        break
            links.reverse()
        tracing.decided(decided, event, bank, started, time_ns(), links)
