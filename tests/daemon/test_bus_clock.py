"""The bus's routing and the clocks."""

from __future__ import annotations

import anyio
import pytest

from tickd.codecs.schema import Bar, News, Quote, Trade, UpdatedBar
from tickd.daemon.actors import Mailbox
from tickd.daemon.bus import Bus
from tickd.daemon.clock import LiveClock, ManualClock

pytestmark = pytest.mark.anyio


def trade(symbol: str) -> Trade:
    return Trade(symbol=symbol, ts_event=1, price=1.0, size=1)


def news(*symbols: str) -> News:
    return News(provider="p", id="1", ts_event=1, ts_updated=1, headline="h", symbols=symbols)


async def drain(box: Mailbox[object]) -> list[object]:
    return await box.receive_batch(100) if len(box) else []


async def test_events_go_to_the_mailboxes_that_asked_for_their_kind_and_symbol() -> None:
    bus = Bus()
    aapl: Mailbox[object] = Mailbox("aapl", 10)
    every: Mailbox[object] = Mailbox("every", 10)
    quotes: Mailbox[object] = Mailbox("quotes", 10)
    bus.subscribe(aapl, Trade, ["AAPL"])
    bus.subscribe(every, Trade)
    bus.subscribe(every, Trade, ["AAPL"])  # both ways: still once
    bus.subscribe(quotes, Quote)
    await bus.publish_many([trade("AAPL"), trade("MSFT")])
    assert [t.symbol for t in await drain(aapl)] == ["AAPL"]  # type: ignore[attr-defined]
    assert [t.symbol for t in await drain(every)] == ["AAPL", "MSFT"]  # type: ignore[attr-defined]
    assert await drain(quotes) == []


async def test_kinds_are_exact_an_updated_bar_is_not_a_bar() -> None:
    bus = Bus()
    bars: Mailbox[object] = Mailbox("bars", 10)
    bus.subscribe(bars, Bar, ["SPY"])
    updated = UpdatedBar(symbol="SPY", ts_event=1, open=1.0, high=1.0, low=1.0, close=1.0, volume=1)
    await bus.publish(updated)  # it replaces a bar: a subscriber to Bar must not count it
    assert await drain(bars) == [] and bus.unrouted == {"UpdatedBar": 1}


async def test_news_reaches_each_named_symbol_once_and_the_rest_is_counted() -> None:
    bus = Bus()
    aapl: Mailbox[object] = Mailbox("aapl", 10)
    every: Mailbox[object] = Mailbox("every", 10)
    bus.subscribe(aapl, News, ["AAPL", "MSFT"])
    bus.subscribe(every, News)
    item = news("AAPL", "MSFT")
    await bus.publish(item)
    assert await drain(aapl) == [item] and await drain(every) == [item]
    await bus.publish(trade("AAPL"))
    await bus.publish(trade("AAPL"))
    assert bus.unrouted == {"Trade": 2}


def bar(symbol: str) -> Bar:
    return Bar(symbol=symbol, ts_event=1, open=1.0, high=1.0, low=1.0, close=1.0, volume=1)


async def test_a_frame_of_one_kind_routed_by_symbol_reaches_its_subscribers() -> None:
    bus = Bus()
    aapl: Mailbox[object] = Mailbox("aapl", 10)
    bus.subscribe(aapl, News, ["AAPL"])
    frame = [news("AAPL"), news("MSFT"), news("AAPL", "MSFT")]
    await bus.publish_many(frame)
    assert await drain(aapl) == [frame[0], frame[2]]
    assert bus.unrouted == {"News": 1}


async def test_a_mixed_frame_gives_each_mailbox_its_kinds_in_order() -> None:
    bus = Bus()
    bars: Mailbox[object] = Mailbox("bars", 10)
    both: Mailbox[object] = Mailbox("both", 10)
    bus.subscribe(bars, Bar)
    bus.subscribe(both, Bar)
    bus.subscribe(both, Trade)
    frame = [
        trade("AAPL"),
        bar("AAPL"),
        trade("MSFT"),
        Quote(symbol="AAPL", ts_event=1, bid_price=1.0, bid_size=1.0, ask_price=1.0, ask_size=1.0),
    ]
    await bus.publish_many(frame)  # no kind routed by symbol: shares by kind
    assert await drain(bars) == [frame[1]]
    assert await drain(both) == frame[:3]
    assert bus.unrouted == {"Quote": 1}
    aapl: Mailbox[object] = Mailbox("aapl", 10)
    bus.subscribe(aapl, Bar, ["AAPL"])  # now Bar also goes by symbol
    frame = [bar("MSFT"), trade("AAPL"), bar("AAPL")]
    await bus.publish_many(frame)
    assert await drain(aapl) == [frame[2]]
    assert await drain(bars) == [frame[0], frame[2]]
    assert await drain(both) == frame


async def test_a_late_subscription_takes_effect_at_once() -> None:
    bus = Bus()
    box: Mailbox[object] = Mailbox("late", 10)
    await bus.publish(trade("AAPL"))  # routes are cached from here...
    bus.subscribe(box, Trade)  # ...and rebuilt after this
    await bus.publish(trade("AAPL"))
    assert len(await drain(box)) == 1


async def test_the_manual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = ManualClock(start_ns=1_000)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 2.0)
        tg.start_soon(sleeper, "early", 1.0)
        tg.start_soon(sleeper, "now", 0.0)
        await anyio.wait_all_tasks_blocked()
        assert woke == ["now"] and clock.next_deadline_ns == 1_000_001_000
        clock.advance(1.5)
        await anyio.wait_all_tasks_blocked()
        assert woke == ["now", "early"]
        clock.set(clock.now_ns() + 10**9)
    assert woke == ["now", "early", "late"]
    assert clock.now_ns() == clock.monotonic_ns() == 1_000 + 2_500_000_000
    assert clock.next_deadline_ns is None
    with pytest.raises(ValueError, match="does not go back"):
        clock.set(0)


async def test_the_live_clock_reads_the_system() -> None:
    clock = LiveClock()
    before = clock.monotonic_ns()
    await clock.sleep(0.001)
    assert clock.monotonic_ns() - before >= 1_000_000
    assert clock.now_ns() > 1_700_000_000 * 10**9
