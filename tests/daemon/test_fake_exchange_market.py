"""The fake exchange's market: any symbol, seeded paths, paced by an injected clock."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickd.codecs.schema import (
    Bar,
    CryptoBar,
    CryptoDailyBar,
    CryptoTrade,
    DailyBar,
    News,
    Quote,
    Trade,
)
from tickd.codecs.synthetic import (
    MarketConfig,
    SyntheticMarket,
    alpaca_frames,
    alpaca_view,
    available_at,
)
from tickd.codecs.tape import TapeWriter
from tickd.codecs.timestamps import parse_rfc3339_ns
from tickd.daemon.clock import ManualClock
from tickd.daemon.fake_exchange.market import Market, MarketSettings

WEDNESDAY = parse_rfc3339_ns("2026-11-25T03:17:41Z")  # a weekday, at night in New York
SATURDAY = parse_rfc3339_ns("2026-11-28T15:00:00Z")
MINUTE = 60 * 10**9


def market(start: int = WEDNESDAY, **settings: Any) -> tuple[Market, ManualClock]:
    clock = ManualClock(start)
    defaults: dict[str, Any] = {"symbols": ("AAPL",), "history_minutes": 30}
    return Market(MarketSettings(**(defaults | settings)), clock), clock


def run(m: Market, clock: ManualClock, seconds: int) -> list[Any]:
    events: list[Any] = []
    for _ in range(seconds):
        clock.advance(1.0)
        events += m.step()
    return events


def undaily(events: list[Any]) -> list[Any]:
    """Without the day-to-date bars (stamped with the start of their day)."""
    return [e for e in events if type(e) not in (DailyBar, CryptoDailyBar)]


def wire(events: list[Any]) -> bytes:
    return msgspec.msgpack.encode(events)


def test_any_symbol_gets_a_path_with_history_equities_and_crypto_alike() -> None:
    m, clock = market(symbols=())
    m.ensure("ZZZQ")
    m.ensure("DOGE/USD")
    assert m.symbols == ("ZZZQ", "DOGE/USD")
    assert {len(m.bars("ZZZQ")), len(m.bars("DOGE/USD"))} == {30}  # the history, at once
    events = run(m, clock, 5)
    kinds = {(type(e), e.symbol) for e in events if not isinstance(e, News)}
    assert (Trade, "ZZZQ") in kinds and (Quote, "ZZZQ") in kinds
    assert (CryptoTrade, "DOGE/USD") in kinds
    trade = m.latest_trade("ZZZQ")
    assert trade is not None and trade == [e for e in events if type(e) is Trade][-1]
    with pytest.raises(ValueError, match="not a symbol"):
        m.ensure("not a symbol")


def test_the_same_seed_gives_the_same_market_and_another_seed_another() -> None:
    first, clock_1 = market(seed=3, symbols=("AAPL", "BTC/USD"))
    second, clock_2 = market(seed=3, symbols=("AAPL", "BTC/USD"))
    other, clock_3 = market(seed=4, symbols=("AAPL", "BTC/USD"))
    a, b, c = run(first, clock_1, 3), run(second, clock_2, 3), run(other, clock_3, 3)
    assert len(a) > 100
    assert wire(a) == wire(b)
    assert wire(a) != wire(c)


def test_a_symbol_added_later_changes_nothing_for_the_others() -> None:
    alone, clock_1 = market()
    joined, clock_2 = market()
    joined.ensure("MSFT")
    aapl = [e for e in run(joined, clock_2, 3) if getattr(e, "symbol", "") == "AAPL"]
    assert wire(run(alone, clock_1, 3)) == wire(aapl)


def test_time_runs_speed_times_faster_from_the_start_and_events_come_in_order() -> None:
    m, clock = market(speed=60.0)
    assert m.now_ns() == WEDNESDAY
    clock.advance(1.0)
    first = undaily(m.step())
    assert m.now_ns() == WEDNESDAY + MINUTE
    assert first and all(WEDNESDAY < available_at(e) <= WEDNESDAY + MINUTE for e in first)
    clock.advance(0.5)
    second = undaily(m.step())
    assert second and all(
        WEDNESDAY + MINUTE < available_at(e) <= WEDNESDAY + 90 * 10**9 for e in second
    )
    times = [available_at(e) for e in first + second]
    assert times == sorted(times)
    assert m.step() == []  # nothing new until the clock moves


def test_the_session_is_always_open_unless_asked_otherwise() -> None:
    always, clock_1 = market(start=SATURDAY, symbols=("AAPL", "BTC/USD"))
    weekend, clock_2 = market(start=SATURDAY, symbols=("AAPL", "BTC/USD"), always_open=False)
    traded_always = Counter(type(e) for e in run(always, clock_1, 2))
    traded_weekend = Counter(type(e) for e in run(weekend, clock_2, 2))
    assert traded_always[Trade] > 0 and traded_always[CryptoTrade] > 0
    assert traded_weekend[Trade] == 0 and traded_weekend[CryptoTrade] > 0


def test_the_path_goes_on_across_model_days_from_the_last_price() -> None:
    m, clock = market(history_minutes=0)
    trades = [e for e in run(m, clock, 24 * 60 + 60) if type(e) is Trade]  # a day and an hour
    day_end = WEDNESDAY - WEDNESDAY % MINUTE + 24 * 60 * MINUTE
    before = [t for t in trades if t.ts_event < day_end][-1]
    after = next(t for t in trades if t.ts_event >= day_end)
    assert abs(after.price / before.price - 1) < 0.01
    assert trades[-1].ts_event > day_end + 30 * MINUTE


def test_minute_bars_are_kept_and_followed_by_the_day_to_date_bar() -> None:
    m, clock = market(symbols=("AAPL", "BTC/USD"))
    events = run(m, clock, 20)
    for bar_type, daily_type in ((Bar, DailyBar), (CryptoBar, CryptoDailyBar)):
        positions = [i for i, e in enumerate(events) if type(e) is bar_type]
        assert len(positions) > 10
        assert all(type(events[i + 1]) is daily_type for i in positions)
    bars = m.bars("AAPL")
    assert len(bars) >= 45  # the 30 minutes of history, then one a (wall) second
    assert [b.ts_event for b in bars] == sorted(b.ts_event for b in bars)
    assert m.latest_bar("AAPL") == bars[-1]
    dailies = [e for e in events if type(e) is DailyBar]
    day = dailies[-1].ts_event
    today = [b for b in bars if b.ts_event >= day]
    assert dailies[-1].volume == sum(b.volume for b in today)
    assert dailies[-1].high == max(b.high for b in today)
    assert m.bars("AAPL", bars[-3].ts_event, bars[-2].ts_event) == bars[-3:-1]
    bounded, clock = market(max_bars=5)
    run(bounded, clock, 3)
    assert len(bounded.bars("AAPL")) == 5


def test_every_subscriber_gets_each_batch_and_a_failing_one_is_counted() -> None:
    m, clock = market()
    got: list[list[Any]] = []

    def broken(events: list[Any]) -> None:
        raise RuntimeError("subscriber bug")

    m.subscribe(broken)
    m.subscribe(got.append)
    clock.advance(1.0)
    batch = m.step()
    assert got == [batch]
    assert m.stats.subscriber_errors == 1
    m.unsubscribe(got.append)
    clock.advance(1.0)
    m.step()
    assert len(got) == 1


def test_a_tape_is_replayed_through_the_codec_on_the_market_clock(tmp_path: Path) -> None:
    events = SyntheticMarket(MarketConfig(seed=5)).events(400)
    path = tmp_path / "session.tape"
    stocks, crypto = alpaca_view(events, "stocks"), alpaca_view(events, "crypto")
    with TapeWriter(path, created_ns=1) as tape:  # as recorded: in time order, both streams
        for event in events:
            if event in stocks:
                tape.write(available_at(event), "alpaca.stocks", alpaca_frames([event])[0])
            elif event in crypto:
                (frame,) = alpaca_frames([event], "crypto", "msgpack")
                tape.write(available_at(event), "alpaca.crypto", frame)
        tape.write(available_at(events[-1]), "alpaca.stocks", b"[{not json")
        tape.write(available_at(events[-1]), "alpaca.trading", b'{"stream": "listening"}')
    m, clock = market(tape=str(path), symbols=())
    m.ensure("ZZZQ")  # a tape has what it has
    replayed = undaily(run(m, clock, 60 * 24))
    first = min(available_at(e) for e in events)
    expected = [e for e in events if e in stocks or e in crypto]
    assert [(type(e), e.symbol, e.price if hasattr(e, "price") else 0) for e in replayed] == [
        (type(e), e.symbol, e.price if hasattr(e, "price") else 0) for e in expected
    ]
    assert all(
        r.ts_event - WEDNESDAY == e.ts_event - first
        for r, e in zip(replayed, expected, strict=True)
    )
    assert m.stats.tape_errors == 1
    assert "ZZZQ" not in m.symbols
