"""The strategy host with the real indicator actor and bank: what each kind of strategy is called
with, in which order, however the events are batched; faults in a strategy stay in it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anyio
import numpy as np
import pytest
from numba import njit

from tickd.codecs.schema import Bar, News, Order, OrderUpdate
from tickd.daemon.actors import Mailbox
from tickd.daemon.indicators import IndicatorActor
from tickd.daemon.portfolio import Portfolio
from tickd.daemon.strategy_host import StrategyHost
from tickd.strategies.base import Context, IndicatorView, OrderIntent, event_id
from tickd.strategies.indicators import Bank, Spec, sma
from tickd.strategies.targets import toward

SMA = Spec("sma", {"timeperiod": 3})
BANDS = Spec("bbands", {"timeperiod": 3})
SYMBOLS = ("AAPL", "MSFT", "SPY", "BTC/USD")


@njit(cache=True)
def above_100(values: Any, columns: Any) -> int:
    value = values[columns[0]]
    if math.isnan(value):
        return 0
    return 1 if value > 100.0 else -1


def order(strategy: str, event: Any, side: str = "buy") -> OrderIntent:
    return OrderIntent(
        strategy=strategy,
        symbol=event.symbol,
        side=side,  # type: ignore[arg-type]
        qty=Decimal(1),
        event_id=event_id(event),
        ts_event=event.ts_event,
    )


class Plain:
    """Records what it is called with; buys on every warmed bar."""

    def __init__(self, name: str = "plain", symbols: Sequence[str] = ("AAPL",)) -> None:
        self.name = name
        self.symbols = tuple(symbols)
        self.indicators = (SMA, BANDS)
        self.events: frozenset[type] = frozenset({Bar, News, OrderUpdate})
        self.calls: list[tuple[Any, tuple[float, ...] | None, bool | None]] = []

    def on_event(
        self, event: Any, view: IndicatorView | None, context: Context
    ) -> Sequence[OrderIntent]:
        if view is None:
            self.calls.append((event, None, None))
            return []
        values = (view[SMA], view[BANDS, "upperband"], view[BANDS, "lowerband"])
        self.calls.append((event, values, view.warmed))
        return [order(self.name, event)] if view.warmed and type(event) is Bar else []


class Signalled:
    name = "signalled"
    indicators = (SMA,)
    events: frozenset[type] = frozenset({Bar})
    signal = above_100

    def __init__(self, symbols: Sequence[str] = ("AAPL", "MSFT")) -> None:
        self.symbols = tuple(symbols)
        self.calls: list[tuple[str, int, int, int]] = []  # symbol, ts, signal, previous

    def on_event(self, event: Any, view: Any, context: Context) -> Sequence[OrderIntent]:
        raise AssertionError("a signal strategy's bars go to on_signal")

    def on_signal(
        self, event: Any, view: IndicatorView, signal: int, previous: int, context: Context
    ) -> Sequence[OrderIntent]:
        assert view[SMA] == view[SMA]  # a value, not NaN: the signal is 0 while warming
        self.calls.append((event.symbol, event.ts_event, signal, previous))
        return [order(self.name, event, "buy" if signal > 0 else "sell")]


def bars(closes: dict[str, list[float]]) -> list[Bar]:
    """Bars of several symbols interleaved, one a minute each."""
    out = []
    for i in range(max(map(len, closes.values()))):
        for symbol, series in closes.items():
            if i < len(series):
                c = series[i]
                out.append(
                    Bar(
                        symbol=symbol,
                        ts_event=(i + 1) * 60 * 10**9,
                        ts_recv=(i + 1) * 60 * 10**9 + 5,
                        open=c,
                        high=c + 1,
                        low=c - 1,
                        close=c,
                        volume=10,
                    )
                )
    return out


async def run_host(
    strategies: Sequence[Any], events: list[Any], chunks: Sequence[int], **host: Any
) -> tuple[StrategyHost, list[OrderIntent]]:
    """The real indicator actor feeding the host, the events cut into the given batch sizes."""
    sent: list[OrderIntent] = []

    async def send(items: list[Any]) -> None:
        sent.extend(items)

    specs = tuple(dict.fromkeys(s for k in strategies for s in k.indicators))
    bank = Bank(specs, len(SYMBOLS), capacity=8)  # small: batches span several calls
    strategy_box: Mailbox[Any] = Mailbox("strategies", 10_000)

    async def publish(items: list[Any]) -> None:
        pass

    indicators = IndicatorActor(
        Mailbox("indicators", 10_000), bank, SYMBOLS, publish, deliver=strategy_box.send_many
    )
    actor = StrategyHost(strategy_box, strategies, bank, SYMBOLS, Portfolio(), send, **host)
    at = 0
    for size in [*chunks, len(events)]:
        batch, at = events[at : at + size], at + size
        if not batch:
            break
        others = [e for e in batch if type(e) is not Bar]
        await indicators.handle([e for e in batch if type(e) is Bar])
        if others:
            await strategy_box.send_many(others)
        await actor.handle(await strategy_box.receive_batch(10_000))
    return actor, sent


WAVES = {
    "AAPL": [99.0, 99.5, 100.5, 101.0, 101.5, 99.0, 98.0, 97.0, 101.0, 102.0, 103.0],
    "MSFT": [101.0, 102.0, 103.0, 98.0, 97.0, 96.0, 95.0, 104.0, 105.0, 106.0, 99.0],
    "SPY": [100.0 + i for i in range(11)],
}


def expected_signals(symbol: str) -> list[tuple[str, int, int, int]]:
    """The changes of sign(sma(3) - 100), from the batch function, per bar."""
    values = sma(np.array(WAVES[symbol]), timeperiod=3)
    calls, last = [], 0
    for i, value in enumerate(values):
        signal = 0 if math.isnan(value) else (1 if value > 100 else -1)
        if signal != last:
            calls.append((symbol, (i + 1) * 60 * 10**9, signal, last))
            last = signal
    return calls


@pytest.mark.anyio
@pytest.mark.parametrize("chunks", [[1] * 40, [5, 7, 3], [33]])
async def test_a_signal_strategy_is_called_only_where_its_signal_changes(
    chunks: list[int],
) -> None:
    strategy = Signalled()
    host, sent = await run_host([strategy], bars(WAVES), chunks)
    expected = sorted(
        expected_signals("AAPL") + expected_signals("MSFT"), key=lambda c: (c[1], c[0])
    )
    assert strategy.calls == expected  # SPY is not its symbol; every batching, same calls
    assert [(i.symbol, i.side) for i in sent] == [
        (s, "buy" if signal > 0 else "sell") for s, _, signal, _ in expected
    ]
    assert host.intents == len(expected)


@pytest.mark.anyio
async def test_a_plain_strategy_sees_every_event_after_the_bank_took_it() -> None:
    strategy = Plain()
    events = bars(WAVES)
    news = News(
        provider="alpaca", id="1", ts_event=1, ts_updated=1, headline="h", symbols=("AAPL",)
    )
    other_news = News(
        provider="alpaca", id="2", ts_event=1, ts_updated=1, headline="h", symbols=("SPY",)
    )
    crypto_news = News(
        provider="alpaca", id="3", ts_event=1, ts_updated=1, headline="h", symbols=("BTCUSD",)
    )
    update = OrderUpdate(event="new", order=Order(id="o", symbol="AAPL"))
    foreign = OrderUpdate(event="new", order=Order(id="p", symbol="SPY"))
    strategy.symbols = ("AAPL", "BTC/USD")
    mixed = [*events, news, other_news, crypto_news, update, foreign]
    _, sent = await run_host([strategy], mixed, [4])
    got = [c for c in strategy.calls if type(c[0]) is Bar]
    assert [c[0] for c in got] == [e for e in events if e.symbol == "AAPL"]
    assert [c[1][0] for c in got if c[1]] == pytest.approx(
        sma(np.array(WAVES["AAPL"]), timeperiod=3), nan_ok=True
    )
    assert [c[2] for c in got] == [False, False] + [True] * 9
    assert [c[0] for c in strategy.calls if c[1] is None] == [news, crypto_news, update]
    assert len(sent) == 9  # one per warmed bar


@pytest.mark.anyio
async def test_a_failing_strategy_is_counted_and_the_others_go_on() -> None:
    class Broken(Plain):
        def on_event(self, event: Any, view: Any, context: Context) -> Sequence[OrderIntent]:
            raise ZeroDivisionError("bug")

    broken, fine = Broken("broken"), Plain("fine")
    host, sent = await run_host([broken, fine], bars(WAVES), [100])
    assert host.errors == {"broken": 11}
    assert len(sent) == 9 and {i.strategy for i in sent} == {"fine"}


@pytest.mark.anyio
async def test_intents_for_other_symbols_or_names_are_refused() -> None:
    class Stray(Plain):
        def on_event(self, event: Any, view: Any, context: Context) -> Sequence[OrderIntent]:
            wrong = order("someone-else", event)
            elsewhere = OrderIntent(
                strategy=self.name,
                symbol="MSFT",
                side="buy",
                qty=Decimal(1),
                event_id="x",
                ts_event=0,
            )
            return [wrong, elsewhere]

    host, sent = await run_host([Stray()], bars(WAVES), [100])
    assert sent == [] and host.invalid_intents == 22


@pytest.mark.anyio
async def test_intents_decided_on_warm_up_history_are_dropped() -> None:
    cut = 7 * 60 * 10**9
    host, sent = await run_host([Plain()], bars(WAVES), [100], trade_after_ns=cut)
    assert [i.ts_event for i in sent] == [t * 60 * 10**9 for t in range(7, 12)]
    assert host.warmup_intents == 4  # warmed bars 3..6


def test_a_strategy_symbol_the_daemon_does_not_follow_is_refused() -> None:
    with pytest.raises(ValueError, match="TSLA is not a daemon symbol"):
        StrategyHost(
            Mailbox("s", 1),
            [Plain(symbols=["TSLA"])],
            Bank((SMA, BANDS), 3),
            SYMBOLS,
            Portfolio(),
            lambda items: None,  # type: ignore[arg-type,return-value]
        )


@pytest.mark.anyio
async def test_the_host_waits_while_paused_then_decides() -> None:
    """A reconciliation replaces local state: decisions wait for it, none are lost."""
    reconciling = [True]
    host, sent = None, []

    async def run() -> None:
        nonlocal host, sent
        host, sent = await run_host([Plain()], bars(WAVES), [100], paused=lambda: reconciling[0])

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.sleep(0.1)
        assert host is None  # the host has not finished its batch: it waits
        reconciling[0] = False
    assert len(sent) == 9


class Target:
    """Wants +1 AAPL on every warmed bar, sized by exposure (held + working), as built-ins are."""

    name = "target"
    symbols = ("AAPL",)
    indicators = (SMA,)
    events: frozenset[type] = frozenset({Bar})

    def on_event(self, event: Any, view: Any, context: Context) -> Sequence[OrderIntent]:
        if not view.warmed:
            return ()
        return toward(
            Decimal(1), strategy=self.name, symbol="AAPL", event=event, context=context, reason="up"
        )


@pytest.mark.anyio
@pytest.mark.parametrize("chunks", [[], [4, 1, 1]], ids=["one batch", "several"])
async def test_a_decision_counts_as_working_before_risk_judges_it(chunks: list[int]) -> None:
    """Several bars in one batch (a backfill, a burst) are decided on before risk runs: the
    second decision must see the first, or the move is ordered once per bar."""
    host, sent = await run_host([Target()], bars({"AAPL": [101, 102, 103, 104, 105, 106]}), chunks)
    assert [(i.side, i.qty) for i in sent] == [("buy", Decimal(1))]
    portfolio = host.context
    assert portfolio.working("AAPL") == 1  # intended, not yet judged
    portfolio.settle(sent[0])  # risk judged it (and denied it, say): the strategy may decide again
    assert portfolio.working("AAPL") == 0 and not portfolio.intended


@pytest.mark.anyio
async def test_intents_never_passed_on_stop_counting_as_working() -> None:
    """A host that crashes before its intents reach risk (here: the send fails) must not leave
    them counted as working, or the strategy would never decide that move again."""
    failing = True

    async def send(items: list[Any]) -> None:
        if failing:
            raise RuntimeError("risk's mailbox is closed")

    bank = Bank((SMA,), len(SYMBOLS), capacity=8)
    box: Mailbox[Any] = Mailbox("strategies", 100)
    indicators = IndicatorActor(Mailbox("i", 100), bank, SYMBOLS, _discard, deliver=box.send_many)
    host = StrategyHost(box, [Target()], bank, SYMBOLS, Portfolio(), send)
    await indicators.handle(bars({"AAPL": [101, 102, 103, 104]}))
    with pytest.raises(RuntimeError):
        await host.handle(await box.receive_batch(100))
    assert host.context.working("AAPL") == 0 and not host.context.intended
    failing = False
    await indicators.handle(bars({"AAPL": [101, 102, 103, 104, 105]})[-1:])
    await host.handle(await box.receive_batch(100))
    assert host.context.working("AAPL") == 1  # decided again, and passed on this time


async def _discard(items: list[Any]) -> None:
    pass
