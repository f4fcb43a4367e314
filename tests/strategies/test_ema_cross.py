"""EmaCross: intents exactly at the bars where the batch EMAs cross, through a real bank and the
real signal scan, on real price series and on the synthetic market."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from tests.strategies.host import DAILY, Book, Columns, Host, bars, interleave, ohlcv
from tickd.codecs.schema import Bar
from tickd.codecs.synthetic.market import MarketConfig, SyntheticMarket
from tickd.strategies.base import IndicatorView, SignalStrategy, event_id
from tickd.strategies.ema_cross import EmaCross, ema_cross_signal
from tickd.strategies.indicators import ema

NAN = math.nan
SYMBOLS = ("NVDA", "ORCL", "YHOO")


def crosses(close: np.ndarray, fast: int, slow: int) -> list[tuple[int, int]]:
    """(bar, +1 up / -1 down) where ema(fast) crosses ema(slow): the sign of fast - slow turns
    to the opposite of its last non-zero value (a tie is no side; warm-up has none)."""
    f, s = ema(close, fast), ema(close, slow)
    side, out = 0, []
    for i in range(len(close)):
        sign = 1 if f[i] > s[i] else -1 if f[i] < s[i] else 0
        if sign == 0:
            continue
        if side == -sign:
            out.append((i, sign))
        side = sign
    return out


def expected(
    close: np.ndarray, fast: int, slow: int, qty: Decimal, allow_short: bool
) -> list[tuple[int, str, Decimal]]:
    """(bar, side, qty) of the intents: each cross sets a target; an order moves to it."""
    held, out = Decimal(0), []
    for i, sign in crosses(close, fast, slow):
        target = qty if sign > 0 else (-qty if allow_short else Decimal(0))
        if target != held:
            out.append((i, "buy" if target > held else "sell", abs(target - held)))
        held = target
    return out


def run_daily(strategy: EmaCross, book: Book) -> tuple[Host, dict[str, list[Bar]]]:
    streams = {s: bars(s, ohlcv(f)) for s, f in zip(SYMBOLS, DAILY, strict=True)}
    # A symbol of the bank that the strategy does not trade: it must never see it.
    streams["SPARE"] = bars("SPARE", ohlcv("2006-day-001.txt"))
    host = Host(strategy, [*SYMBOLS, "SPARE"], book=book)
    events = interleave(*streams.values())
    host.feed(events)
    return host, streams


def per_symbol(
    host: Host, streams: dict[str, list[Bar]]
) -> dict[str, list[tuple[int, str, Decimal]]]:
    """Each intent as (the bar's index in its symbol's series, side, qty), by symbol."""
    position = {id(b): i for s in streams.values() for i, b in enumerate(s)}
    events = interleave(*streams.values())
    got: dict[str, list[tuple[int, str, Decimal]]] = {s: [] for s in streams}
    for index, intent in host.intents:
        bar = events[index]
        assert intent.symbol == bar.symbol
        assert intent.event_id == event_id(bar)
        assert (intent.ts_event, intent.ts_recv) == (bar.ts_event, bar.ts_recv)
        got[intent.symbol].append((position[id(bar)], intent.side, intent.qty))
    return got


@pytest.mark.parametrize("allow_short", [False, True])
@pytest.mark.parametrize(("fast", "slow"), [(12, 26), (5, 30)])
def test_intents_exactly_at_the_batch_crosses(fast: int, slow: int, allow_short: bool) -> None:
    qty = Decimal("7")
    strategy = EmaCross(
        name="trend", symbols=SYMBOLS, fast=fast, slow=slow, qty=qty, allow_short=allow_short
    )
    host, streams = run_daily(strategy, Book())
    got = per_symbol(host, streams)
    assert got.pop("SPARE") == []
    for symbol, intents in got.items():
        want = expected(ohlcv(DAILY[SYMBOLS.index(symbol)]).close, fast, slow, qty, allow_short)
        assert len(want) > 20, "the series should cross many times"
        assert intents == want, symbol
        assert all(i >= slow - 1 for i, _, _ in intents)  # nothing during warm-up
    for _, intent in host.intents:
        assert intent.strategy == "trend"
        assert intent.type == "market" and intent.limit_price is None
        assert intent.time_in_force == "day"


def test_the_first_signal_after_warm_up_is_not_a_cross() -> None:
    strategy = EmaCross(name="trend", symbols=SYMBOLS, allow_short=True)
    host, streams = run_daily(strategy, Book())
    got = per_symbol(host, streams)
    for symbol in SYMBOLS:
        close = ohlcv(DAILY[SYMBOLS.index(symbol)]).close
        f, s = ema(close, 12), ema(close, 26)
        first = int(np.flatnonzero(~np.isnan(s))[0])
        assert first == 25 and not np.isnan(f[first]) and f[first] != s[first]
        assert got[symbol][0][0] > first
        assert got[symbol][0][0] == crosses(close, 12, 26)[0][0]


def test_working_orders_count_as_held_so_nothing_is_doubled() -> None:
    # Orders that never fill: every later decision must count them, and send the same orders.
    filled, _ = run_daily(EmaCross(name="t", symbols=SYMBOLS, allow_short=True), Book())
    pending, _ = run_daily(EmaCross(name="t", symbols=SYMBOLS, allow_short=True), Book(fills=False))
    assert [(i, x.side, x.qty) for i, x in pending.intents] == [
        (i, x.side, x.qty) for i, x in filled.intents
    ]
    assert not pending.book.positions and pending.book.orders


def test_on_the_synthetic_market() -> None:
    config = MarketConfig(
        seed=11,
        equities=(("AAPL", 190.0), ("MSFT", 410.0), ("NVDA", 880.0)),
        crypto=(),
        trade_rate=0.1,
        quote_rate=0.0,
        book_rate=0.0,
        news_rate=0.0,
    )
    events = SyntheticMarket(config).events(15_000)
    strategy = EmaCross(name="syn", symbols=("AAPL", "NVDA"), fast=3, slow=8, qty=Decimal(2))
    host = Host(strategy, ["AAPL", "MSFT", "NVDA"], capacity=50)
    host.feed(events)
    for symbol in ("AAPL", "NVDA"):
        series = [(k, e) for k, e in enumerate(events) if isinstance(e, Bar) and e.symbol == symbol]
        close = np.array([e.close for _, e in series])
        want = [
            (series[i][0], side, qty)
            for i, side, qty in expected(close, 3, 8, Decimal(2), allow_short=False)
        ]
        assert len(want) > 10
        assert [(k, x.side, x.qty) for k, x in host.intents if x.symbol == symbol] == want
    assert not any(x.symbol == "MSFT" for _, x in host.intents)


def view(fast: float, slow: float, strategy: EmaCross) -> IndicatorView:
    columns = Columns([(strategy.fast_ema, 0), (strategy.slow_ema, 1)])
    return IndicatorView("AAPL", [fast, slow], columns)


def bar(minute: int, close: float = 100.0) -> Bar:
    return Bar(
        symbol="AAPL",
        ts_event=minute * 60_000_000_000,
        ts_recv=minute * 60_000_000_000 + 5,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=100,
    )


def test_on_signal_targets_and_reasons() -> None:
    strategy = EmaCross(name="t", symbols=["AAPL"], qty=Decimal(3), allow_short=True)
    book = Book()
    up, down = view(101.25, 100.875, strategy), view(99.5, 100.0, strategy)
    assert strategy.on_signal(bar(0), down, -1, 0, book) == ()  # first signal: not a cross
    (buy,) = strategy.on_signal(bar(1), up, 1, -1, book)
    assert (buy.side, buy.qty) == ("buy", Decimal(3))
    assert buy.reason == "ema(12) crossed above ema(26): 101.25 > 100.875; target +3 from +0"
    assert buy.event_id == "Bar:AAPL:60000000000"
    assert (buy.ts_event, buy.ts_recv) == (60_000_000_000, 60_000_000_005)
    book.orders["AAPL"] = Decimal(3)  # still working
    (sell,) = strategy.on_signal(bar(2), down, -1, 1, book)
    assert (sell.side, sell.qty) == ("sell", Decimal(6))  # reverse: the working buy counts
    assert sell.reason.startswith("ema(12) crossed below ema(26): 99.5 < 100")
    assert sell.reason.endswith("target -3 from +3")
    book.orders["AAPL"] = Decimal(-3)  # the reversal is working: the next up cross ...
    book.positions["AAPL"] = Decimal(6)  # ... after a fill elsewhere leaves +3 in all
    assert strategy.on_signal(bar(3), up, 1, -1, book) == ()  # already at the target


def test_without_short_a_cross_down_only_exits() -> None:
    strategy = EmaCross(name="t", symbols=["AAPL"])
    book = Book()
    up, down = view(2.0, 1.0, strategy), view(1.0, 2.0, strategy)
    strategy.on_signal(bar(0), up, 1, 0, book)
    assert strategy.on_signal(bar(1), down, -1, 1, book) == ()  # flat: nothing to exit
    (buy,) = strategy.on_signal(bar(2), up, 1, -1, book)
    book.send(buy)
    (sell,) = strategy.on_signal(bar(3), down, -1, 1, book)
    assert (sell.side, sell.qty) == ("sell", Decimal(1))
    assert sell.reason.endswith("target +0 from +1")


def test_a_tie_neither_hides_nor_makes_a_cross() -> None:
    strategy = EmaCross(name="t", symbols=["AAPL"])
    book = Book()
    up, tie, down = view(2.0, 1.0, strategy), view(1.5, 1.5, strategy), view(1.0, 2.0, strategy)
    strategy.on_signal(bar(0), down, -1, 0, book)
    assert strategy.on_signal(bar(1), tie, 0, -1, book) == ()
    assert strategy.on_signal(bar(2), down, -1, 0, book) == ()  # back to the same side
    assert strategy.on_signal(bar(3), tie, 0, -1, book) == ()
    assert len(strategy.on_signal(bar(4), up, 1, 0, book)) == 1  # -1, tie, +1: a cross


def test_warming_up_again_forgets_the_side() -> None:
    strategy = EmaCross(name="t", symbols=["AAPL"])
    book = Book()
    strategy.on_signal(bar(0), view(1.0, 2.0, strategy), -1, 0, book)
    assert strategy.on_signal(bar(1), view(NAN, NAN, strategy), 0, -1, book) == ()  # reset
    assert strategy.on_signal(bar(2), view(2.0, 1.0, strategy), 1, 0, book) == ()


def test_signal_function() -> None:
    columns = np.array([2, 0], dtype=np.int64)  # fast in column 2, slow in column 0
    assert ema_cross_signal(np.array([1.0, 9.0, 2.0]), columns) == 1
    assert ema_cross_signal(np.array([2.0, 9.0, 1.0]), columns) == -1
    assert ema_cross_signal(np.array([2.0, 9.0, 2.0]), columns) == 0
    assert ema_cross_signal(np.array([NAN, 9.0, 2.0]), columns) == 0
    assert ema_cross_signal(np.array([1.0, 9.0, NAN]), columns) == 0


def test_meets_the_protocol_and_declares_its_inputs() -> None:
    strategy = EmaCross(name="t", symbols=["AAPL", "MSFT"], fast=9, slow=21)
    assert isinstance(strategy, SignalStrategy)
    assert strategy.symbols == ("AAPL", "MSFT")
    assert [s.label for s in strategy.indicators] == ["ema(timeperiod=9)", "ema(timeperiod=21)"]
    assert Bar in strategy.events
    assert strategy.on_event(bar(0), None, Book()) == ()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast": 26, "slow": 26}, "fast (26) must be less than slow (26)"),
        ({"fast": 1}, "fast must be >= 2"),
        ({"slow": 12.5}, "slow must be an integer"),
        ({"qty": 0}, "qty must be > 0"),
        ({"allow_short": "yes"}, "allow_short must be true or false"),
        ({"time_in_force": "forever"}, "time_in_force must be one of"),
    ],
)
def test_rejects_bad_parameters(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EmaCross(name="t", symbols=["AAPL"], **params)  # type: ignore[arg-type]
