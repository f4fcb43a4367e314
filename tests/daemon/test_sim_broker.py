"""The simulated broker: which event fills an order and at what price, the order's events,
fees, duplicates, cancels and the reconciliation answers (time driven by a ManualClock)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tickd.codecs.schema import Bar, CryptoTrade, OrderUpdate, Quote, Trade
from tickd.daemon.broker.base import OrderRequest
from tickd.daemon.broker.sim import FINISHED, SimBroker, SimSettings
from tickd.daemon.clock import ManualClock
from tickd.strategies.base import OrderIntent

pytestmark = pytest.mark.anyio

D = Decimal
NOW = 5_000  # the clock while orders arrive
DECIDED = 100  # the ts_event of the event every decision here was made on


class Sim:
    """A SimBroker with a list that collects what it publishes, batch by batch."""

    def __init__(self, **settings: Any) -> None:
        self.batches: list[list[Any]] = []
        self.clock = ManualClock(NOW)
        self.broker = SimBroker(SimSettings(**settings), self._publish, self.clock)

    async def _publish(self, batch: list[Any]) -> None:
        self.batches.append(list(batch))

    @property
    def updates(self) -> list[OrderUpdate]:
        return [u for batch in self.batches for u in batch]

    def events(self) -> list[str]:
        return [u.event for u in self.updates]

    def fills(self) -> list[OrderUpdate]:
        return [u for u in self.updates if u.event == "fill"]


def request(
    side: str = "buy",
    qty: str = "10",
    *,
    coid: str = "c1",
    symbol: str = "AAPL",
    limit: str | None = None,
    tif: str = "day",
    ts_event: int = DECIDED,
) -> OrderRequest:
    intent = OrderIntent(
        strategy="s",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=D(qty),
        type="limit" if limit is not None else "market",
        limit_price=D(limit) if limit is not None else None,
        time_in_force=tif,  # type: ignore[arg-type]
        event_id=f"Bar:{symbol}:{ts_event}",
        ts_event=ts_event,
    )
    return OrderRequest(client_order_id=coid, intent=intent)


def trade(ts: int, price: float, symbol: str = "AAPL", recv: int = 0) -> Trade:
    return Trade(symbol=symbol, ts_event=ts, ts_recv=recv, price=price, size=100)


def quote(ts: int, bid: float, ask: float, symbol: str = "AAPL") -> Quote:
    return Quote(symbol=symbol, ts_event=ts, bid_price=bid, bid_size=1, ask_price=ask, ask_size=1)


def bar(ts: int, o: float, h: float, low: float, c: float, symbol: str = "AAPL") -> Bar:
    return Bar(symbol=symbol, ts_event=ts, open=o, high=h, low=low, close=c, volume=1000)


# --- market orders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "price", "slippage", "expected"),
    [
        ("buy", 100.0, 1.0, "100.0100"),
        ("sell", 100.0, 1.0, "99.9900"),
        ("buy", 10.05, 1.0, "10.0510"),  # 10.051005, to the ten-thousandth
        ("sell", 20.0, 2.5, "19.9950"),
        ("buy", 42.42, 0.0, "42.4200"),
    ],
)
async def test_a_market_order_fills_at_the_next_trade_with_slippage(
    side: str, price: float, slippage: float, expected: str
) -> None:
    sim = Sim(slippage_bps=slippage)
    await sim.broker.submit(request(side, "10"))
    assert sim.events() == ["new"]
    await sim.broker.on_market([trade(DECIDED + 1, price, recv=DECIDED + 7)])
    [fill] = sim.fills()
    assert fill.price == D(expected)
    assert fill.qty == D(10)
    assert fill.position_qty == (D(10) if side == "buy" else D(-10))
    assert (fill.ts_event, fill.ts_recv) == (DECIDED + 1, DECIDED + 7)
    assert fill.order.status == "filled"
    assert (fill.order.filled_qty, fill.order.filled_avg_price) == (D(10), D(expected))
    assert (fill.order.filled_at, fill.order.updated_at) == (DECIDED + 1, DECIDED + 1)


async def test_rounding_to_the_ten_thousandth_is_half_even() -> None:
    sim = Sim(slippage_bps=1.0)
    await sim.broker.submit(request(symbol="BTC/USD", qty="0.01"))
    crypto = CryptoTrade(symbol="BTC/USD", ts_event=DECIDED + 1, price=65000.5, size=0.2)
    await sim.broker.on_market([crypto])
    [fill] = sim.fills()
    assert fill.price == D("65007.0000")  # 65007.00005 exactly: the tie goes to the even digit
    assert (fill.qty, fill.position_qty) == (D("0.01"), D("0.01"))


@pytest.mark.parametrize(("side", "expected"), [("buy", "100.5"), ("sell", "99.5")])
async def test_a_market_order_fills_at_the_ask_to_buy_and_the_bid_to_sell(
    side: str, expected: str
) -> None:
    sim = Sim(slippage_bps=0.0)
    await sim.broker.submit(request(side))
    await sim.broker.on_market([quote(DECIDED + 1, 99.5, 100.5)])
    [fill] = sim.fills()
    assert fill.price == D(expected)


async def test_a_market_order_fills_at_a_bar_open() -> None:
    sim = Sim(slippage_bps=0.0)
    await sim.broker.submit(request("buy"))
    await sim.broker.on_market([bar(DECIDED + 60, 50.0, 55.0, 45.0, 52.0)])
    [fill] = sim.fills()
    assert fill.price == D(50)


@pytest.mark.parametrize(("side", "one_sided"), [("buy", (99.0, 0.0)), ("sell", (0.0, 101.0))])
async def test_a_one_sided_quote_does_not_fill(side: str, one_sided: tuple[float, float]) -> None:
    sim = Sim(slippage_bps=0.0)
    await sim.broker.submit(request(side))
    await sim.broker.on_market([quote(DECIDED + 1, *one_sided)])
    assert sim.events() == ["new"]
    assert len(await sim.broker.open_orders()) == 1
    await sim.broker.on_market([trade(DECIDED + 2, 100.0)])
    assert sim.events() == ["new", "fill"]


async def test_an_order_never_fills_on_its_decision_event_or_before_it() -> None:
    sim = Sim(slippage_bps=0.0)
    await sim.broker.on_market([trade(DECIDED - 1, 90.0), trade(DECIDED, 95.0)])
    await sim.broker.submit(request())  # arrived after those: they are in its past
    await sim.broker.on_market([trade(DECIDED, 96.0), trade(DECIDED - 5, 97.0)])
    assert sim.events() == ["new"]
    assert [o.client_order_id for o in await sim.broker.open_orders()] == ["c1"]
    await sim.broker.on_market([trade(DECIDED + 1, 98.0)])
    [fill] = sim.fills()
    assert (fill.price, fill.ts_event) == (D(98), DECIDED + 1)


async def test_an_event_seen_before_the_order_but_after_its_decision_fills_it_on_submit() -> None:
    sim = Sim(slippage_bps=0.0)
    await sim.broker.on_market([trade(DECIDED, 90.0), trade(DECIDED + 1, 91.0)])
    assert sim.batches == []
    await sim.broker.submit(request())
    assert [[u.event for u in batch] for batch in sim.batches] == [["new", "fill"]]
    assert sim.fills()[0].price == D(91)
    # it is done: no later event fills it again, nothing is left to cancel
    assert await sim.broker.open_orders() == []
    await sim.broker.on_market([trade(DECIDED + 2, 92.0)])
    await sim.broker.cancel(sim.fills()[0].order.id)
    assert sim.events() == ["new", "fill"]
    assert await sim.broker.positions() == {"AAPL": D(10)}
    assert sim.broker.stats.fills == 1 and sim.broker.stats.canceled == 0


async def run(order_first: bool, requests: list[OrderRequest], market: list[Any]) -> Sim:
    sim = Sim(slippage_bps=1.0, fee_per_share=0.01)
    if order_first:
        for r in requests:
            await sim.broker.submit(r)
        await sim.broker.on_market(market)
    else:
        await sim.broker.on_market(market)
        for r in requests:
            await sim.broker.submit(r)
    await sim.broker.on_market([trade(DECIDED + 50, 150.0), quote(DECIDED + 51, 1.0, 2.0)])
    return sim


def by_order(sim: Sim) -> dict[str, list[OrderUpdate]]:
    updates: dict[str, list[OrderUpdate]] = {}
    for u in sim.updates:
        updates.setdefault(u.order.client_order_id, []).append(u)
    return updates


async def test_the_order_of_arrival_does_not_change_what_happens_to_each_order() -> None:
    requests = [
        request("buy", "10", coid="m"),
        request("sell", "4", coid="l", limit="100.4"),
        request("buy", "1", coid="i", limit="99", tif="ioc"),
    ]
    market = [trade(DECIDED, 80.0), quote(DECIDED + 1, 100.5, 100.6), trade(DECIDED + 2, 99.0)]
    after, before = await run(True, requests, market), await run(False, requests, market)
    assert by_order(after) == by_order(before)
    assert after.broker.stats == before.broker.stats
    assert await after.broker.positions() == await before.broker.positions() == {"AAPL": D(6)}
    assert await after.broker.fills(0) == await before.broker.fills(0)
    events = {coid: [u.event for u in updates] for coid, updates in by_order(after).items()}
    assert events == {"m": ["new", "fill"], "l": ["new", "fill"], "i": ["new", "canceled"]}
    executions = {u.order.client_order_id: u for u in after.fills()}
    assert executions["m"].price == D("100.6101")  # the ask 100.6 + 1 bp: 100.61006
    assert executions["l"].price == D("100.5")  # the bid, better than the limit
    assert executions["m"].ts_event == executions["l"].ts_event == DECIDED + 1


async def test_both_arrival_orders_publish_identical_updates() -> None:
    requests = [request("buy", "10", coid="m")]
    market = [trade(DECIDED + 3, 101.0, recv=DECIDED + 9)]
    after, before = await run(True, requests, market), await run(False, requests, market)
    assert after.updates == before.updates
    assert [u.event for u in after.updates] == ["new", "fill"]
    assert after.updates[1].price == D("101.0101")


# --- limit orders -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "limit", "events", "expected"),
    [
        ("buy", "100", [trade(DECIDED + 1, 100.01)], None),
        ("buy", "100", [trade(DECIDED + 1, 100.0)], "100"),
        ("buy", "100", [trade(DECIDED + 1, 99.0)], "99"),
        ("buy", "100", [quote(DECIDED + 1, 99.0, 100.5)], None),
        ("buy", "100", [quote(DECIDED + 1, 99.0, 99.75)], "99.75"),
        ("buy", "100", [bar(DECIDED + 1, 101.0, 102.0, 99.5, 101.5)], "100"),
        ("buy", "100", [bar(DECIDED + 1, 98.0, 99.0, 97.0, 98.5)], "98"),
        ("buy", "100", [bar(DECIDED + 1, 101.0, 102.0, 100.01, 101.5)], None),
        ("sell", "100", [trade(DECIDED + 1, 99.99)], None),
        ("sell", "100", [trade(DECIDED + 1, 100.25)], "100.25"),
        ("sell", "100", [quote(DECIDED + 1, 99.5, 101.0)], None),
        ("sell", "100", [quote(DECIDED + 1, 100.5, 101.0)], "100.5"),
        ("sell", "100", [bar(DECIDED + 1, 99.0, 100.5, 98.0, 99.5)], "100"),
        ("sell", "100", [bar(DECIDED + 1, 101.0, 102.0, 100.5, 101.5)], "101"),
        ("sell", "100", [bar(DECIDED + 1, 99.0, 99.99, 98.0, 99.5)], None),
    ],
)
async def test_a_limit_order_fills_only_when_the_price_crosses_at_the_better_price(
    side: str, limit: str, events: list[Any], expected: str | None
) -> None:
    sim = Sim(slippage_bps=5.0)  # no slippage on a limit order: it never fills past its limit
    await sim.broker.submit(request(side, limit=limit))
    await sim.broker.on_market(events)
    if expected is None:
        assert sim.events() == ["new"]
        assert len(await sim.broker.open_orders()) == 1
    else:
        [fill] = sim.fills()
        assert fill.price == D(expected)
        assert await sim.broker.open_orders() == []


async def test_a_day_limit_order_waits_for_the_cross() -> None:
    sim = Sim()
    await sim.broker.submit(request("buy", limit="100"))
    await sim.broker.on_market([trade(DECIDED + 1, 101.0), trade(DECIDED + 2, 100.5)])
    assert sim.events() == ["new"]
    await sim.broker.on_market([trade(DECIDED + 3, 99.5), trade(DECIDED + 4, 98.0)])
    [fill] = sim.fills()
    assert (fill.price, fill.ts_event) == (D("99.5"), DECIDED + 3)


@pytest.mark.parametrize("tif", ["ioc", "fok"])
async def test_an_ioc_limit_not_crossing_on_the_first_eligible_event_is_cancelled(tif: str) -> None:
    sim = Sim()
    await sim.broker.submit(request("buy", limit="100", tif=tif))
    await sim.broker.on_market([trade(DECIDED, 90.0)])  # not eligible: its decision's time
    assert sim.events() == ["new"]
    await sim.broker.on_market([trade(DECIDED + 1, 100.5), trade(DECIDED + 2, 99.0)])
    assert sim.events() == ["new", "canceled"]
    canceled = sim.updates[-1]
    assert canceled.order.status == "canceled"
    assert (canceled.ts_event, canceled.order.canceled_at) == (DECIDED + 1, DECIDED + 1)
    assert await sim.broker.open_orders() == []
    assert await sim.broker.positions() == {}
    assert (sim.broker.stats.canceled, sim.broker.stats.fills) == (1, 0)


async def test_an_ioc_limit_crossing_on_the_first_eligible_event_fills() -> None:
    sim = Sim()
    await sim.broker.on_market([trade(DECIDED, 110.0), trade(DECIDED + 1, 99.0)])
    await sim.broker.submit(request("buy", limit="100", tif="ioc"))
    assert sim.events() == ["new", "fill"]
    assert sim.fills()[0].price == D(99)


async def test_an_ioc_limit_cancelled_by_an_event_seen_before_it_arrived() -> None:
    sim = Sim()
    await sim.broker.on_market([trade(DECIDED + 1, 101.0), trade(DECIDED + 2, 99.0)])
    await sim.broker.submit(request("buy", limit="100", tif="ioc"))
    assert [[u.event for u in batch] for batch in sim.batches] == [["new", "canceled"]]
    assert await sim.broker.open_orders() == []
    await sim.broker.on_market([trade(DECIDED + 3, 95.0)])
    assert sim.events() == ["new", "canceled"]


# --- duplicates, fees, cancel -------------------------------------------------------------------


async def test_a_reused_client_order_id_returns_the_same_order_and_publishes_nothing() -> None:
    sim = Sim()
    first = await sim.broker.submit(request("buy", "10", limit="50"))
    again = await sim.broker.submit(request("sell", "3", limit="70"))  # same id, other intent
    assert again == first
    assert len(sim.batches) == 1
    assert sim.broker.stats.submitted == 1 and sim.broker.stats.duplicates == 1
    assert len(await sim.broker.open_orders()) == 1
    await sim.broker.on_market([trade(DECIDED + 1, 49.0)])
    batches = len(sim.batches)
    filled = await sim.broker.submit(request("buy", "10", limit="50"))
    assert (filled.id, filled.status, filled.filled_qty) == (first.id, "filled", D(10))
    assert len(sim.batches) == batches
    assert await sim.broker.positions() == {"AAPL": D(10)}
    assert sim.broker.stats.duplicates == 2


async def test_open_orders_and_the_latest_finished_ones_are_remembered_not_every_order() -> None:
    """A long dry run must not keep every order it ever sent (the soak found the dict growing):
    open orders stay whatever their age; of the finished, the latest ``FINISHED``."""
    sim = Sim()
    await sim.broker.submit(request("buy", "1", coid="working", limit="1"))  # never crosses
    extra = 5
    coids = [f"m{i}" for i in range(FINISHED + extra)]
    for coid in coids:
        await sim.broker.submit(request("buy", "1", coid=coid))
    await sim.broker.on_market([trade(DECIDED + 1, 100.0)])  # fills every market order
    orders = sim.broker.orders
    assert len(orders) == FINISHED + 1
    assert orders["working"].status == "new"
    assert not any(c in orders for c in coids[:extra])  # the oldest finished are forgotten
    assert all(orders[c].status == "filled" for c in coids[extra:])
    assert len(await sim.broker.fills(0)) == FINISHED
    remembered = await sim.broker.submit(request("buy", "1", coid=coids[extra]))
    assert remembered.status == "filled" and sim.broker.stats.duplicates == 1
    await sim.broker.submit(request("buy", "1", coid=coids[0]))  # forgotten: a new order
    assert sim.broker.stats.duplicates == 1
    assert sim.broker.stats.submitted == 1 + len(coids) + 1


async def test_fees_per_share_and_rate_add_up_exactly() -> None:
    sim = Sim(slippage_bps=1.0, fee_per_share=0.005, fee_rate=0.0001)
    await sim.broker.submit(request("buy", "10", coid="a"))
    await sim.broker.submit(request("sell", "3", coid="b", symbol="MSFT"))
    await sim.broker.on_market([trade(DECIDED + 1, 100.0), trade(DECIDED + 1, 50.0, "MSFT")])
    assert [f.price for f in sim.fills()] == [D("100.0100"), D("49.9950")]
    # 10 x 0.005 + 10 x 100.01 x 0.0001 + 3 x 0.005 + 3 x 49.995 x 0.0001
    assert sim.broker.stats.fees == D("0.05") + D("0.10001") + D("0.015") + D("0.0149985")
    assert sim.broker.stats.fees == D("0.1800085")


async def test_no_fees_by_default() -> None:
    sim = Sim()
    await sim.broker.submit(request())
    await sim.broker.on_market([trade(DECIDED + 1, 100.0)])
    assert sim.broker.stats.fees == 0 and sim.broker.stats.fills == 1


async def test_cancel_takes_a_working_order_off_the_book() -> None:
    sim = Sim()
    order = await sim.broker.submit(request("buy", limit="90"))
    other = await sim.broker.submit(request("buy", limit="80", coid="c2"))
    sim.clock.set(NOW + 42)
    await sim.broker.cancel(order.id)
    canceled = sim.updates[-1]
    assert canceled.event == "canceled"
    assert canceled.order.id == order.id and canceled.order.status == "canceled"
    assert (canceled.ts_event, canceled.order.canceled_at) == (NOW + 42, NOW + 42)
    assert [o.id for o in await sim.broker.open_orders()] == [other.id]
    assert sim.broker.stats.canceled == 1
    await sim.broker.on_market([trade(DECIDED + 1, 70.0)])
    assert [f.order.id for f in sim.fills()] == [other.id]


async def test_cancelling_an_unknown_or_finished_order_does_nothing() -> None:
    sim = Sim()
    order = await sim.broker.submit(request())
    await sim.broker.on_market([trade(DECIDED + 1, 70.0)])
    published = len(sim.batches)
    await sim.broker.cancel(order.id)
    await sim.broker.cancel("no-such-order")
    assert len(sim.batches) == published
    assert sim.broker.stats.canceled == 0


# --- what reconciliation asks -------------------------------------------------------------------


async def test_open_orders_positions_and_fills() -> None:
    sim = Sim(slippage_bps=0.0)
    await sim.broker.submit(request("buy", "10", coid="a"))
    await sim.broker.submit(request("sell", "5", coid="b", symbol="MSFT"))
    await sim.broker.submit(request("buy", "1", coid="w", limit="1"))  # keeps working
    await sim.broker.on_market([trade(200, 100.0), trade(200, 400.0, "MSFT")])
    await sim.broker.submit(request("sell", "4", coid="c", ts_event=200))
    await sim.broker.submit(request("buy", "5", coid="d", symbol="MSFT", ts_event=200))
    await sim.broker.on_market([trade(300, 101.0), trade(300, 390.0, "MSFT")])
    assert await sim.broker.positions() == {"AAPL": D(6)}  # MSFT is flat: left out
    assert [o.client_order_id for o in await sim.broker.open_orders()] == ["w"]
    everything = await sim.broker.fills(0)
    assert [(f.client_order_id, f.side, f.qty, f.price) for f in everything] == [
        ("a", "buy", D(10), D(100)),
        ("b", "sell", D(5), D(400)),
        ("c", "sell", D(4), D(101)),
        ("d", "buy", D(5), D(390)),
    ]
    assert [f.client_order_id for f in await sim.broker.fills(300)] == ["c", "d"]
    assert [f.client_order_id for f in await sim.broker.fills(201)] == ["c", "d"]
    assert await sim.broker.fills(301) == []
    by_update = {u.execution_id: u for u in sim.fills()}
    for f in everything:
        update = by_update[f.execution_id]
        assert (f.order_id, f.symbol, f.ts_event) == (
            update.order.id,
            update.order.symbol,
            update.ts_event,
        )
    assert [u.position_qty for u in sim.fills()] == [D(10), D(-5), D(6), D(0)]


# --- the updates themselves ---------------------------------------------------------------------


async def scenario() -> Sim:
    sim = Sim(slippage_bps=1.0)
    await sim.broker.submit(request("buy", "10", coid="a"))
    await sim.broker.submit(request("sell", "2", coid="b", limit="101"))
    await sim.broker.on_market([quote(DECIDED + 1, 100.0, 100.2)])
    sim.clock.set(NOW + 10)
    await sim.broker.submit(request("sell", "10", coid="c", ts_event=DECIDED + 1))
    await sim.broker.on_market([bar(DECIDED + 60, 101.5, 102.0, 99.0, 101.0)])
    return sim


async def test_the_new_event_describes_the_order() -> None:
    sim = await scenario()
    new = sim.updates[0]
    assert new.event == "new"
    assert (new.ts_event, new.ts_recv) == (NOW, NOW)
    assert new.execution_id is None and new.qty is None and new.price is None
    order = new.order
    assert (order.client_order_id, order.symbol, order.side, order.status) == (
        "a",
        "AAPL",
        "buy",
        "new",
    )
    assert (order.order_type, order.time_in_force, order.qty, order.filled_qty) == (
        "market",
        "day",
        D(10),
        D(0),
    )
    assert (order.created_at, order.submitted_at, order.updated_at) == (NOW, NOW, NOW)
    limit = sim.updates[1].order
    assert (limit.order_type, limit.limit_price) == ("limit", D(101))


async def test_the_updates_of_a_run() -> None:
    sim = await scenario()
    assert [(u.event, u.order.client_order_id) for u in sim.updates] == [
        ("new", "a"),
        ("new", "b"),
        ("fill", "a"),
        ("new", "c"),
        ("fill", "b"),
        ("fill", "c"),
    ]
    fills = sim.fills()
    assert [u.price for u in fills] == [D("100.2100"), D("101.5"), D("101.4898")]
    # 101.5 - 1 bp = 101.48985: the tie goes to the even digit
    assert [u.position_qty for u in fills] == [D(10), D(8), D(-2)]
    assert len({u.execution_id for u in fills}) == 3
    assert all(u.order.status == "filled" for u in fills)


async def test_two_identical_runs_give_identical_updates_and_execution_ids() -> None:
    first, second = await scenario(), await scenario()
    assert first.updates == second.updates
    assert [u.execution_id for u in first.fills()] == [u.execution_id for u in second.fills()]
    assert all(u.execution_id for u in first.fills())


async def test_another_client_order_id_is_another_order_and_execution() -> None:
    one, other = Sim(), Sim()
    await one.broker.submit(request(coid="x"))
    await other.broker.submit(request(coid="y"))
    for sim in (one, other):
        await sim.broker.on_market([trade(DECIDED + 1, 100.0)])
    assert one.fills()[0].order.id != other.fills()[0].order.id
    assert one.fills()[0].execution_id != other.fills()[0].execution_id
