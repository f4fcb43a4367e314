"""The fake exchange's matching engine: orders against market events, positions and the account,
fills as activities, and one listener seeing every order event, in order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tickd.codecs.schema import Bar, CryptoTrade, DailyBar, OrderUpdate, Quote, Trade, UpdatedBar
from tickd.codecs.synthetic import MarketConfig, SyntheticMarket
from tickd.codecs.timestamps import parse_rfc3339_ns
from tickd.daemon.fake_exchange.chaos import Chaos, ChaosSettings
from tickd.daemon.fake_exchange.market import valid_symbol
from tickd.daemon.fake_exchange.matching import MatchingEngine, NewOrder, OrderError

T0 = 1_700_000_000_000_000_000
DAY = 86_400 * 10**9


class StepClock:
    """One nanosecond later at every reading: deterministic, and every event has its own time."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


def engine_with(
    cash: str = "100000", chaos: Chaos | None = None, **kw: Any
) -> tuple[MatchingEngine, list[OrderUpdate]]:
    engine = MatchingEngine(clock_ns=StepClock(), chaos=chaos or Chaos(), cash=Decimal(cash), **kw)
    events: list[OrderUpdate] = []
    engine.subscribe(events.append)
    return engine, events


def trade(price: float, size: int = 1000, symbol: str = "AAPL") -> Trade:
    return Trade(symbol=symbol, ts_event=T0, price=price, size=size)


def order(**fields: Any) -> NewOrder:
    chosen: dict[str, Any] = {
        "symbol": "AAPL",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "qty": Decimal(10),
    }
    return NewOrder(**(chosen | fields))


def summary(events: list[OrderUpdate]) -> list[tuple[str, Any, Any, Any]]:
    return [(e.event, e.qty, e.price, e.position_qty) for e in events]


def test_a_market_order_fills_at_once_at_the_last_trade_price() -> None:
    engine, events = engine_with()
    engine.on_market([trade(187.31)])
    placed = engine.submit(order(client_order_id="cid-1"))

    assert summary(events) == [
        ("new", None, None, None),
        ("fill", Decimal(10), Decimal("187.31"), Decimal(10)),
    ]
    assert events[0].order.status == "new" and events[1].order.status == "filled"
    assert (placed.status, placed.filled_qty, placed.filled_avg_price) == (
        "filled",
        Decimal(10),
        Decimal("187.31"),
    )
    assert engine.cash == Decimal("100000") - Decimal("1873.1")
    [activity] = engine.activities()
    assert (activity.type, activity.qty, activity.cum_qty, activity.order_id) == (
        "fill",
        Decimal(10),
        Decimal(10),
        placed.id,
    )


def test_a_market_order_before_any_price_waits_and_fills_in_parts_on_trades() -> None:
    engine, events = engine_with()
    placed = engine.submit(order(qty=Decimal(250)))
    assert placed.status == "new" and engine.list_orders() == [placed]

    engine.on_market([trade(10.0, size=100), trade(10.5, size=100), trade(11.0, size=100)])

    assert summary(events) == [
        ("new", None, None, None),
        ("partial_fill", Decimal(100), Decimal("10.0"), Decimal(100)),
        ("partial_fill", Decimal(100), Decimal("10.5"), Decimal(200)),
        ("fill", Decimal(50), Decimal("11.0"), Decimal(250)),
    ]
    assert [e.order.filled_qty for e in events[1:]] == [Decimal(100), Decimal(200), Decimal(250)]
    final = engine.get(placed.id)
    assert final.status == "filled"
    assert final.filled_avg_price == Decimal("10.4")  # (1000 + 1050 + 550) / 250
    assert [a.type for a in engine.activities(direction="asc")] == [
        "partial_fill",
        "partial_fill",
        "fill",
    ]
    assert engine.list_orders() == [] and engine.list_orders(status="closed") == [final]


def test_a_limit_order_rests_until_the_market_reaches_it_and_fills_at_the_market_price() -> None:
    engine, events = engine_with()
    engine.on_market([trade(101.0)])
    placed = engine.submit(order(type="limit", limit_price=Decimal(100), time_in_force="gtc"))
    engine.on_market([trade(100.5)])
    assert engine.get(placed.id).status == "new"

    ask_at_limit = Quote(
        symbol="AAPL", ts_event=T0, bid_price=99.5, bid_size=1, ask_price=99.75, ask_size=1
    )
    engine.on_market([ask_at_limit])  # buys meet the ask: one round lot is 100 shares

    assert summary(events)[-1] == ("fill", Decimal(10), Decimal("99.75"), Decimal(10))
    assert engine.get(placed.id).status == "filled"


def test_stops_trigger_at_the_stop_and_then_act_as_market_orders() -> None:
    engine, events = engine_with()
    engine.on_market([trade(50.0)])
    engine.submit(order(type="stop", stop_price=Decimal(52), time_in_force="gtc"))
    engine.on_market([trade(51.0)])
    assert [e.event for e in events] == ["new"]
    engine.on_market([trade(52.5)])
    assert summary(events)[-1] == ("fill", Decimal(10), Decimal("52.5"), Decimal(10))


def test_ioc_cancels_the_rest_and_fok_fills_whole_or_not_at_all() -> None:
    engine, events = engine_with()
    engine.on_market([trade(20.0)])
    ioc = engine.submit(order(type="limit", limit_price=Decimal(19), time_in_force="ioc"))
    fok = engine.submit(order(type="limit", limit_price=Decimal(21), time_in_force="fok"))
    assert engine.get(ioc.id).status == "canceled"
    assert engine.get(fok.id).status == "filled"
    assert [e.event for e in events] == ["new", "canceled", "new", "fill"]


def test_day_orders_expire_at_midnight_utc_and_gtc_orders_do_not() -> None:
    clock = StepClock()
    engine = MatchingEngine(clock_ns=clock, chaos=Chaos())
    day = engine.submit(order(type="limit", limit_price=Decimal(1)))
    gtc = engine.submit(order(type="limit", limit_price=Decimal(1), time_in_force="gtc"))
    clock.now = (T0 // DAY + 1) * DAY  # midnight
    engine.on_market([trade(5.0)])
    assert engine.get(day.id).status == "expired"
    assert engine.get(gtc.id).status == "new"


def test_positions_track_average_price_realized_and_unrealized_pnl_long_and_short() -> None:
    engine, _ = engine_with()
    engine.on_market([trade(100.0)])
    engine.submit(order(qty=Decimal(10)))
    engine.on_market([trade(110.0, size=10**6)])
    engine.submit(order(qty=Decimal(10)))  # 20 at an average of 105
    engine.on_market([trade(120.0)])

    [long] = engine.positions()
    assert (long.side, long.qty, long.avg_entry_price) == ("long", Decimal(20), Decimal(105))
    assert (long.market_value, long.cost_basis, long.unrealized_pl) == (
        Decimal(2400),
        Decimal(2100),
        Decimal(300),
    )
    assert long.lastday_price == Decimal(100) and long.current_price == Decimal(120)

    engine.submit(order(side="sell", qty=Decimal(30)))  # sells 20 (+300 realized), shorts 10
    [short] = engine.positions()
    assert (short.side, short.qty, short.avg_entry_price) == ("short", Decimal(-10), Decimal(120))
    assert engine.realized_pl == Decimal(300)
    engine.on_market([trade(115.0)])
    short = engine.position("AAPL")
    assert (short.market_value, short.unrealized_pl) == (Decimal(-1150), Decimal(50))

    account = engine.account()
    # cash: 100000 - 1000 - 1100 + 3600 = 101500; equity = cash - 1150 (the short)
    assert (account.cash, account.equity) == (Decimal(101500), Decimal(100350))
    assert account.short_market_value == Decimal(-1150)
    assert account.buying_power == Decimal(101500) - 2 * Decimal(1150)

    engine.submit(order(qty=Decimal(10)))  # covers at 115: +50 realized, flat
    assert engine.positions() == [] and engine.realized_pl == Decimal(350)
    with pytest.raises(OrderError) as missing:
        engine.position("AAPL")
    assert missing.value.status == 404


def test_client_order_ids_are_unique_for_good_even_after_a_cancel() -> None:
    engine, _ = engine_with()
    first = engine.submit(order(client_order_id="dup", type="limit", limit_price=Decimal(1)))
    engine.cancel(first.id)
    with pytest.raises(OrderError) as duplicate:
        engine.submit(order(client_order_id="dup"))
    assert (duplicate.value.status, duplicate.value.code, duplicate.value.message) == (
        422,
        40010001,
        "client_order_id must be unique",
    )
    assert engine.get_by_client_id("dup").status == "canceled"
    with pytest.raises(OrderError) as twice:
        engine.cancel(first.id)
    assert twice.value.status == 422


def test_invalid_orders_are_refused_with_alpacas_statuses() -> None:
    engine, events = engine_with(cash="1000")
    engine.on_market([trade(100.0)])
    cases = [
        (order(qty=None), 422),
        (order(type="trailing_stop"), 422),
        (order(type="limit"), 422),
        (order(time_in_force="opg"), 422),
        (order(symbol="not a symbol"), 422),
        (order(qty=Decimal(11)), 403),  # 1100 > 1000 of buying power
    ]
    for request, status in cases:
        with pytest.raises(OrderError) as refused:
            engine.submit(request)
        assert refused.value.status == status, request
    assert events == [] and engine.list_orders(status="all") == []


def test_crypto_orders_use_the_pair_and_positions_the_joined_name() -> None:
    engine, _ = engine_with()
    engine.on_market([CryptoTrade(symbol="BTC/USD", ts_event=T0, price=60000.5, size=0.25)])
    placed = engine.submit(order(symbol="BTCUSD", qty=Decimal("0.1"), time_in_force="gtc"))
    assert placed.symbol == "BTC/USD" and placed.asset_class == "crypto"
    [position] = engine.positions()
    assert (position.symbol, position.qty, position.asset_class) == (
        "BTCUSD",
        Decimal("0.1"),
        "crypto",
    )
    assert engine.position("BTC/USD") == position
    with pytest.raises(OrderError) as short:  # crypto cannot be sold short
        engine.submit(order(symbol="BTC/USD", side="sell", qty=Decimal(1), time_in_force="gtc"))
    assert short.value.status == 403 and "insufficient balance" in short.value.message
    closing = engine.close_position("BTCUSD")
    assert (closing.side, closing.qty, closing.status) == ("sell", Decimal("0.1"), "filled")
    assert engine.positions() == []
    assert [a.symbol for a in engine.assets()] == ["BTC/USD"]


def test_submission_chaos_fails_without_keeping_or_keeps_without_answering() -> None:
    from tickd.daemon.fake_exchange.matching import SubmitUnansweredError

    chaos = Chaos(ChaosSettings(submit_fail_every=2, submit_timeout_every=3))
    engine, _ = engine_with(chaos=chaos)
    engine.submit(order(client_order_id="a"))
    with pytest.raises(OrderError) as failed:
        engine.submit(order(client_order_id="b"))
    assert failed.value.status == 500
    with pytest.raises(SubmitUnansweredError) as held:
        engine.submit(order(client_order_id="c"))
    assert engine.get_by_client_id("c") == held.value.order
    assert [o.client_order_id for o in engine.list_orders(direction="asc")] == ["a", "c"]
    assert chaos.injected == {"submit_fail": 1, "submit_timeout": 1}


def run_session(seed: int) -> list[Any]:
    market = SyntheticMarket(MarketConfig(equities=(("AAPL", 190.0),), crypto=(), seed=7))
    engine, events = engine_with(cash="10000000", seed=seed)
    batches = market.events(400)
    for i in range(0, len(batches), 20):
        engine.on_market(batches[i : i + 20])
        last = [e.price for e in batches[: i + 20] if isinstance(e, Trade)][-1]
        buy = i % 40 == 0
        limit = Decimal(str(round(last * (0.9995 if buy else 1.0005), 2)))
        side = "buy" if buy else "sell"
        engine.submit(order(side=side, type="limit", limit_price=limit, qty=Decimal(500)))
    return [(e.event, e.order.id, e.execution_id, e.qty, e.price) for e in events] + [
        engine.account().equity,
        engine.activities(page_size=100),
    ]


def test_a_replay_is_repeatable_and_the_seed_changes_the_ids() -> None:
    first, again, other = run_session(1), run_session(1), run_session(2)
    assert first == again
    assert [e[0] for e in first[:-2]] == [e[0] for e in other[:-2]]
    assert [e[1] for e in first[:-2]] != [e[1] for e in other[:-2]]
    assert any(e[0] == "partial_fill" for e in first[:-2])


def test_only_minute_bars_offer_volume_not_the_day_to_date_or_updated_bars() -> None:
    engine, events = engine_with()
    placed = engine.submit(order(qty=Decimal(250)))
    minute = Bar(symbol="AAPL", ts_event=T0, open=10, high=10, low=10, close=10.0, volume=100)
    fields = msgspec.structs.asdict(minute) | {"volume": 10**6}
    engine.on_market([minute, DailyBar(**fields), UpdatedBar(**fields)])
    assert summary(events)[1:] == [("partial_fill", Decimal(100), Decimal("10.0"), Decimal(100))]
    assert engine.get(placed.id).status == "partially_filled"


def test_numbers_that_are_not_finite_are_refused_and_the_engine_goes_on() -> None:
    engine, events = engine_with()
    engine.on_market([trade(100.0)])
    for fields in (
        {"qty": Decimal("NaN")},
        {"qty": Decimal("Infinity")},
        {"type": "limit", "limit_price": Decimal("NaN")},
        {"type": "stop", "stop_price": Decimal("-Infinity")},
        {"type": "limit", "limit_price": Decimal(0)},
    ):
        with pytest.raises(OrderError) as refused:
            engine.submit(order(**fields))
        assert refused.value.status == 422, fields
    assert events == []
    engine.submit(order(qty=Decimal(1)))
    with pytest.raises(OrderError) as bad_close:
        engine.close_position("AAPL", qty=Decimal("NaN"))
    assert bad_close.value.status == 422
    engine.on_market([trade(101.0)])
    assert engine.position("AAPL").current_price == Decimal(101)


def test_symbols_the_market_cannot_start_are_refused_not_handed_to_it() -> None:
    started: list[str] = []

    def ensure(symbol: str) -> None:
        if not valid_symbol(symbol):
            raise ValueError(f"not a symbol: {symbol!r}")
        started.append(symbol)

    engine, _ = engine_with(on_symbol=ensure)
    for symbol in ("1ABC", ".X", "BTC/", "ABCDEFGHIJKLMNOPQRSTU"):
        with pytest.raises(OrderError) as refused:
            engine.submit(order(symbol=symbol))
        assert refused.value.status == 422, symbol
    engine.submit(order(symbol="BRK.B"))
    assert started == ["BRK.B"] and engine.stats.submissions == 5


def test_a_short_sale_needs_buying_power_and_a_crypto_sale_the_coins_priced_or_not() -> None:
    engine, _ = engine_with(cash="1000")
    engine.on_market([trade(100.0)])
    engine.submit(order(qty=Decimal(5)))  # 500 spent, 500 cash left
    with pytest.raises(OrderError) as refused:  # sells 5, shorts 6 (600 > 500)
        engine.submit(order(side="sell", qty=Decimal(11)))
    assert (refused.value.status, refused.value.message) == (403, "insufficient buying power")
    engine.submit(order(side="sell", qty=Decimal(7)))  # sells 5, shorts 2 (200)
    assert engine.position("AAPL").qty == Decimal(-2)

    with pytest.raises(OrderError) as no_coins:  # no ETH price yet, and no ETH either
        engine.submit(order(symbol="ETH/USD", side="sell", qty=Decimal(1), time_in_force="gtc"))
    assert no_coins.value.status == 403 and "insufficient balance" in no_coins.value.message


def test_fills_from_fractional_sizes_keep_at_most_nine_decimals() -> None:
    engine, events = engine_with()
    engine.submit(order(symbol="BTC/USD", qty=Decimal(1), time_in_force="gtc"))
    size = 0.123456789123
    engine.on_market([CryptoTrade(symbol="BTC/USD", ts_event=T0, price=100.0, size=size)])
    assert events[-1].event == "partial_fill" and events[-1].qty == Decimal("0.123456789")
    assert engine.positions()[0].qty == Decimal("0.123456789")


SATURDAY = parse_rfc3339_ns("2025-11-29T15:00:00Z")


def test_with_sessions_the_clock_follows_them_and_equity_orders_wait_for_the_open() -> None:
    clock = StepClock(SATURDAY)
    engine = MatchingEngine(clock_ns=clock, chaos=Chaos(), sessions=("13:30", "20:00"))
    engine.on_market([trade(100.0), CryptoTrade(symbol="BTC/USD", ts_event=T0, price=1.0, size=5)])
    shut = engine.clock()
    assert (shut.is_open, shut.next_open, shut.next_close) == (
        False,
        "2025-12-01T13:30:00Z",
        "2025-12-01T20:00:00Z",
    )
    waiting = engine.submit(order())  # a day market order, closed: it waits for the open
    coins = engine.submit(order(symbol="BTC/USD", qty=Decimal(1), time_in_force="gtc"))
    assert engine.get(waiting.id).status == "new" and engine.get(coins.id).status == "filled"

    clock.now = parse_rfc3339_ns("2025-12-01T14:00:00Z")
    open_now = engine.clock()
    assert (open_now.is_open, open_now.next_open, open_now.next_close) == (
        True,
        "2025-12-02T13:30:00Z",
        "2025-12-01T20:00:00Z",
    )
    engine.on_market([trade(101.0, size=5)])
    assert engine.get(waiting.id).status == "partially_filled"
    clock.now = parse_rfc3339_ns("2025-12-01T20:00:00Z")  # the close: day orders expire
    engine.on_market([])
    assert engine.get(waiting.id).status == "expired"
    assert MatchingEngine(clock_ns=StepClock(SATURDAY), chaos=Chaos()).clock().is_open
