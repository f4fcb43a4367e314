"""RsiReversion: entries and exits at exactly the bars the rule picks from the batch RSI and
Bollinger Bands, through a real bank, on real daily and intraday price series."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from tests.strategies.host import DAILY, Book, Columns, Host, bars, interleave, ohlcv
from tickd.codecs.schema import Bar, News
from tickd.strategies.base import IndicatorView, Strategy, event_id
from tickd.strategies.indicators import bbands, rsi
from tickd.strategies.rsi_reversion import RsiReversion

NAN = math.nan
FILES = {"NVDA": DAILY[0], "YHOO": DAILY[2], "ES": "2006-min-005.txt"}


def expected(
    close: np.ndarray,
    qty: Decimal,
    *,
    allow_short: bool = False,
    rsi_period: int = 14,
    oversold: float = 30.0,
    exit_level: float = 50.0,
    overbought: float = 70.0,
    bb_period: int = 20,
    bb_dev: float = 2.0,
) -> list[tuple[int, str, Decimal]]:
    """(bar, side, qty) of the intents the documented rule gives, from the batch indicators."""
    r = rsi(close, rsi_period)
    upper, middle, lower = bbands(close, bb_period, bb_dev, bb_dev)
    held, out = Decimal(0), []
    for i, c in enumerate(close):
        if math.isnan(r[i]) or math.isnan(middle[i]):
            continue
        if r[i] < oversold and c < lower[i]:
            target = qty
        elif allow_short and r[i] > overbought and c > upper[i]:
            target = -qty
        elif (held > 0 and (r[i] > exit_level or c > middle[i])) or (
            held < 0 and (r[i] < 100 - exit_level or c < middle[i])
        ):
            target = Decimal(0)
        else:
            continue
        if target != held:
            out.append((i, "buy" if target > held else "sell", abs(target - held)))
        held = target
    return out


def run(strategy: RsiReversion, book: Book | None = None) -> tuple[Host, dict[str, list[Bar]]]:
    streams = {s: bars(s, ohlcv(f)) for s, f in FILES.items()}
    host = Host(strategy, list(FILES), book=book)
    host.feed(interleave(*streams.values()))
    return host, streams


def per_symbol(host: Host, streams: dict[str, list[Bar]]) -> dict[str, list[Any]]:
    position = {id(b): i for s in streams.values() for i, b in enumerate(s)}
    events = interleave(*streams.values())
    got: dict[str, list[Any]] = {s: [] for s in streams}
    for index, intent in host.intents:
        bar = events[index]
        assert intent.symbol == bar.symbol and intent.event_id == event_id(bar)
        got[intent.symbol].append((position[id(bar)], intent.side, intent.qty))
    return got


@pytest.mark.parametrize("allow_short", [False, True])
def test_intents_exactly_where_the_rule_says(allow_short: bool) -> None:
    qty = Decimal("2.5")
    strategy = RsiReversion(name="revert", symbols=["NVDA", "ES"], qty=qty, allow_short=allow_short)
    host, streams = run(strategy)
    got = per_symbol(host, streams)
    assert got.pop("YHOO") == []  # in the bank, not traded
    for symbol, intents in got.items():
        want = expected(ohlcv(FILES[symbol]).close, qty, allow_short=allow_short)
        assert len(want) >= 10, "the series should give the rule work"
        assert intents == want, symbol
        assert min(i for i, _, _ in intents) >= 19  # warm-up: bbands(20) has no value before
    assert {x.type for _, x in host.intents} == {"market"}


def test_parameters_reach_the_indicators_and_the_rule() -> None:
    params: dict[str, Any] = {
        "rsi_period": 7,
        "oversold": 25.0,
        "exit_level": 55.0,
        "overbought": 80.0,
        "bb_period": 10,
        "bb_dev": 1.5,
    }
    strategy = RsiReversion(name="r", symbols=["YHOO"], allow_short=True, **params)
    assert [s.label for s in strategy.indicators] == [
        "rsi(timeperiod=7)",
        "bbands(timeperiod=10,nbdevup=1.5,nbdevdn=1.5,matype=0)",
    ]
    host, streams = run(strategy)
    want = expected(ohlcv(FILES["YHOO"]).close, Decimal(1), allow_short=True, **params)
    assert len(want) >= 10
    assert per_symbol(host, streams)["YHOO"] == want


def test_limit_orders_at_the_close() -> None:
    strategy = RsiReversion(name="r", symbols=["NVDA"], order_type="limit", time_in_force="gtc")
    host, _ = run(strategy)
    events = interleave(*(bars(s, ohlcv(f)) for s, f in FILES.items()))
    assert host.intents
    for index, intent in host.intents:
        assert intent.type == "limit" and intent.time_in_force == "gtc"
        assert intent.limit_price == Decimal(repr(events[index].close))
        assert float(intent.limit_price) == events[index].close


def test_a_limit_offset_makes_passive_orders_that_rest_below_or_above_the_close() -> None:
    offset = 0.004
    strategy = RsiReversion(
        name="r", symbols=["NVDA"], allow_short=True, order_type="limit", limit_offset=offset
    )
    host, _ = run(strategy)
    events = interleave(*(bars(s, ohlcv(f)) for s, f in FILES.items()))
    assert {x.side for _, x in host.intents} == {"buy", "sell"}
    for index, intent in host.intents:
        close = Decimal(repr(events[index].close))
        assert intent.type == "limit" and intent.limit_price is not None
        assert intent.limit_price == intent.limit_price.quantize(Decimal("0.01"))  # the tick
        away = abs(intent.limit_price - close) / close  # passive, by the offset, to a cent
        assert (intent.limit_price < close) == (intent.side == "buy")
        assert offset <= away < offset + float(Decimal("0.01") / close)


def test_passive_prices_by_hand() -> None:
    s = RsiReversion(
        name="r", symbols=["AAPL"], allow_short=True, order_type="limit", limit_offset=0.01
    )
    buy = s.on_event(bar(89.0), view(s, 25.0, 110.0, 100.0, 90.0), Book())
    sell = s.on_event(bar(111.0), view(s, 75.0, 110.0, 100.0, 90.0), Book())
    assert [(x.side, x.limit_price) for x in (*buy, *sell)] == [
        ("buy", Decimal("88.11")),
        ("sell", Decimal("112.11")),
    ]
    # Rounded away from the market: down to buy, up to sell; 0.0001 below a dollar.
    assert s.limit_price(89.555, buying=True) == Decimal("88.65")  # 88.65945
    assert s.limit_price(89.555, buying=False) == Decimal("90.46")  # 90.45055
    assert s.limit_price(0.5, buying=True) == Decimal("0.4950")
    # Without an offset the limit is the close itself, as before.
    plain = RsiReversion(name="r", symbols=["AAPL"], order_type="limit")
    assert plain.limit_price(89.555, buying=True) == Decimal("89.555")


def test_working_orders_count_as_held_so_nothing_is_doubled() -> None:
    filled, _ = run(RsiReversion(name="r", symbols=["NVDA", "ES"], allow_short=True))
    pending, _ = run(
        RsiReversion(name="r", symbols=["NVDA", "ES"], allow_short=True), Book(fills=False)
    )
    assert [(i, x.side, x.qty) for i, x in pending.intents] == [
        (i, x.side, x.qty) for i, x in filled.intents
    ]


# --- one bar at a time, by hand -------------------------------------------------------------------


def view(strategy: RsiReversion, r: float, upper: float, middle: float, lower: float) -> Any:
    columns = Columns(
        [
            (strategy.rsi, 0),
            ((strategy.bbands, "upperband"), 1),
            ((strategy.bbands, "middleband"), 2),
            ((strategy.bbands, "lowerband"), 3),
        ]
    )
    return IndicatorView("AAPL", [r, upper, middle, lower], columns)


def bar(close: float, minute: int = 0) -> Bar:
    return Bar(
        symbol="AAPL",
        ts_event=minute * 60_000_000_000,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=1,
    )


def decide(strategy: RsiReversion, close: float, *values: float, book: Book) -> list[Any]:
    return [
        (x.side, x.qty, x.reason)
        for x in strategy.on_event(bar(close), view(strategy, *values), book)
    ]


def test_the_rule_bar_by_bar() -> None:
    s = RsiReversion(name="r", symbols=["AAPL"], qty=Decimal(10), allow_short=True)
    book = Book()
    # RSI low but close inside the bands: no entry; both: entry.
    assert decide(s, 95.0, 25.0, 110.0, 100.0, 90.0, book=book) == []
    assert decide(s, 89.0, 31.0, 110.0, 100.0, 90.0, book=book) == []
    assert decide(s, 89.0, 25.0, 110.0, 100.0, 90.0, book=book) == [
        (
            "buy",
            Decimal(10),
            "oversold: rsi 25.00 < 30 and close 89 < lower band 90; target +10 from +0",
        )
    ]
    book.positions["AAPL"] = Decimal(10)
    assert decide(s, 88.0, 20.0, 110.0, 100.0, 90.0, book=book) == []  # already long
    assert decide(s, 99.0, 49.0, 110.0, 100.0, 90.0, book=book) == []  # hold
    assert decide(s, 99.0, 51.0, 110.0, 100.0, 90.0, book=book) == [
        ("sell", Decimal(10), "exit long: rsi 51.00 > 50; target +0 from +10")
    ]
    assert decide(s, 100.5, 45.0, 110.0, 100.0, 90.0, book=book) == [
        ("sell", Decimal(10), "exit long: close 100.5 > middle band 100; target +0 from +10")
    ]
    book.orders["AAPL"] = Decimal(-10)  # the exit is working: nothing more to do
    assert decide(s, 100.5, 45.0, 110.0, 100.0, 90.0, book=book) == []
    # Flat; overbought above the upper band: short; then exits mirror the long side.
    book.positions["AAPL"] = book.orders["AAPL"] = Decimal(0)
    assert decide(s, 109.0, 75.0, 110.0, 100.0, 90.0, book=book) == []
    assert decide(s, 111.0, 75.0, 110.0, 100.0, 90.0, book=book)[0][:2] == ("sell", Decimal(10))
    book.positions["AAPL"] = Decimal(-10)
    assert decide(s, 101.0, 51.0, 110.0, 100.0, 90.0, book=book) == []
    assert decide(s, 101.0, 49.0, 110.0, 100.0, 90.0, book=book)[0][:2] == ("buy", Decimal(10))
    assert decide(s, 99.0, 55.0, 110.0, 100.0, 90.0, book=book)[0][2].startswith(
        "exit short: close 99 < middle band 100"
    )
    # Short, then oversold below the lower band: one order reverses to long.
    assert decide(s, 89.0, 25.0, 110.0, 100.0, 90.0, book=book)[0][:2] == ("buy", Decimal(20))


def test_long_only_never_shorts() -> None:
    s = RsiReversion(name="r", symbols=["AAPL"])
    assert decide(s, 111.0, 90.0, 110.0, 100.0, 90.0, book=Book()) == []


def test_nothing_while_warming_up_or_without_a_view() -> None:
    s = RsiReversion(name="r", symbols=["AAPL"])
    book = Book()
    assert decide(s, 89.0, NAN, 110.0, 100.0, 90.0, book=book) == []
    assert decide(s, 89.0, 25.0, NAN, NAN, NAN, book=book) == []
    assert s.on_event(bar(89.0), None, book) == ()
    news = News(provider="alpaca", id="1", ts_event=0, ts_updated=0, headline="x")
    assert s.on_event(news, view(s, 25.0, 110.0, 100.0, 90.0), book) == ()


def test_meets_the_protocol() -> None:
    s = RsiReversion(name="r", symbols=["AAPL"])
    assert isinstance(s, Strategy)
    assert Bar in s.events
    assert s.indicators == (s.rsi, s.bbands)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"oversold": 50.0}, "oversold (50.0) must be below exit_level (50.0)"),
        ({"oversold": 60.0, "exit_level": 65.0, "overbought": 55.0}, "must be below overbought"),
        ({"exit_level": 20.0, "oversold": 10.0}, "a short exits below 100 - exit_level (80)"),
        ({"overbought": 101}, "overbought must be within [0, 100]"),
        ({"rsi_period": 1}, "rsi_period must be >= 2"),
        ({"bb_dev": 0}, "bb_dev must be > 0"),
        ({"bb_dev": math.inf}, "bb_dev must be within"),
        ({"order_type": "stop"}, "order_type must be one of"),
        ({"qty": "ten"}, "qty must be a number"),
        ({"qty": "NaN"}, "qty must be > 0 and finite"),
        ({"order_type": "limit", "limit_offset": -0.01}, "limit_offset must be within [0, 1]"),
        ({"order_type": "limit", "limit_offset": 1}, "limit_offset must be below 1"),
        ({"order_type": "limit", "limit_offset": "1%"}, "limit_offset must be a number"),
        ({"limit_offset": 0.01}, 'limit_offset needs order_type = "limit"'),
    ],
)
def test_rejects_bad_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        RsiReversion(name="r", symbols=["AAPL"], **params)
    assert message in str(info.value)
