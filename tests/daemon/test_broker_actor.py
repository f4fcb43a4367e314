"""The broker actor over the simulated broker: refusals become events, reconciliation at start and
after the order stream reconnects, and what happens when the venue cannot be asked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tickd.codecs.schema import Order, OrderUpdate, Trade
from tickd.daemon.actors import Mailbox
from tickd.daemon.broker.actor import BrokerActor
from tickd.daemon.broker.base import (
    BrokerUnavailableError,
    Fill,
    Gate,
    OrderRejectedError,
    OrderRequest,
    OrderWithdrawnError,
)
from tickd.daemon.broker.sim import SimBroker, SimSettings
from tickd.daemon.clock import ManualClock
from tickd.daemon.config import RiskConfig
from tickd.daemon.feeds.base import FeedGap
from tickd.daemon.portfolio import Portfolio
from tickd.daemon.risk import RiskEngine, RiskState
from tickd.strategies.base import OrderIntent

T0 = 1_709_650_800 * 10**9


def request(
    coid: str = "c1", side: str = "buy", qty: str = "10", limit: str | None = None
) -> OrderRequest:
    intent = OrderIntent(
        type="market" if limit is None else "limit",
        limit_price=None if limit is None else Decimal(limit),
        strategy="s",
        symbol="AAPL",
        side=side,  # type: ignore[arg-type]
        qty=Decimal(qty),
        event_id=f"Bar:AAPL:{coid}",
        ts_event=T0,
    )
    return OrderRequest(client_order_id=coid, intent=intent)


def trade(price: float, seconds: int = 1) -> Trade:
    return Trade(
        symbol="AAPL",
        ts_event=T0 + seconds * 10**9,
        trade_id=seconds,
        exchange="V",
        price=price,
        size=100,
        conditions=(),
        tape="C",
    )


class Setup:
    def __init__(self, broker_class: type[SimBroker] = SimBroker) -> None:
        self.published: list[Any] = []
        self.clock = ManualClock(T0)
        self.portfolio = Portfolio()
        self.risk = RiskEngine(RiskConfig(), self.portfolio, ["AAPL"], [], self.clock)
        self.broker = broker_class(SimSettings(slippage_bps=0), self.publish, self.clock)
        self.actor = BrokerActor(
            Mailbox("broker", 100), self.broker, self.risk, self.publish, self.clock
        )

    async def publish(self, items: list[Any]) -> None:
        self.published.extend(items)
        for item in items:  # what the risk actor does with them
            if type(item) is OrderUpdate:
                self.portfolio.apply(item)

    def events(self, name: str) -> list[OrderUpdate]:
        return [u for u in self.published if type(u) is OrderUpdate and u.event == name]


@pytest.mark.anyio
async def test_orders_are_sent_and_filled_in_the_order_of_the_batch() -> None:
    s = Setup()
    await s.actor.on_start()
    s.portfolio.add_working("c1", request("c1").intent)
    await s.actor.handle([trade(99.0, 0), request("c1"), trade(100.0, 1), trade(101.0, 2)])
    (filled,) = s.events("fill")
    assert filled.price == Decimal("100.0000")  # the first trade after the decision
    assert s.actor.sent == 1 and s.portfolio.position("AAPL") == 10
    assert s.portfolio.orders == {}


@pytest.mark.anyio
async def test_a_refused_order_becomes_a_rejected_update() -> None:
    class Refusing(SimBroker):
        async def submit(self, request: OrderRequest, go: Gate | None = None) -> Order:
            raise OrderRejectedError("insufficient buying power", status=403, code=40310000)

    s = Setup(Refusing)
    s.portfolio.add_working("c1", request().intent, pending_since=0)
    await s.actor.handle([request()])
    (rejected,) = s.events("rejected")
    assert rejected.order.client_order_id == "c1" and rejected.order.status == "rejected"
    assert s.actor.failed == {"rejected": 1} and s.actor.sent == 0
    assert s.portfolio.orders == {} and s.portfolio.pending == {}
    assert not s.risk.reconciling and s.risk.state is RiskState.ACTIVE


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "counted"),
    [
        (BrokerUnavailableError("timed out, not found", client_order_id="c1"), "unavailable"),
        (RuntimeError("adapter bug"), "error"),
    ],
)
@pytest.mark.parametrize("placed", [True, False])
async def test_an_unknown_outcome_is_never_a_rejection(
    error: Exception, counted: str, placed: bool
) -> None:
    """The venue may hold the order though the call failed: reconciliation asks it."""

    class Failing(SimBroker):
        async def submit(self, request: OrderRequest, go: Gate | None = None) -> Order:
            if placed:
                await super().submit(request)
            raise error

    s = Setup(Failing)
    s.portfolio.add_working("c1", request(limit="50").intent, pending_since=0)
    await s.actor.handle([request(limit="50")])
    assert s.events("rejected") == [] and s.actor.failed == {counted: 1}
    assert s.actor.reconciliations == 1
    # Placed: the venue lists it and it stays working. Not placed: it is gone.
    assert set(s.portfolio.orders) == ({"c1"} if placed else set())
    assert s.portfolio.pending == {}


@pytest.mark.anyio
async def test_fills_arriving_during_a_reconciliation_count_once() -> None:
    """The stream delivers a fill while the venue is being asked: applied once, after."""
    s = Setup()
    await s.actor.on_start()
    s.portfolio.add_working("c1", request("c1").intent, pending_since=0)
    await s.actor.handle([request("c1"), trade(100.0, 1)])  # filled; published, applied
    assert s.portfolio.position("AAPL") == 10
    (fill,) = s.events("fill")

    class Slow(SimBroker):
        async def open_orders(self) -> list[Order]:
            s.portfolio.apply(fill)  # the stream repeats it mid-reconciliation
            s.portfolio.apply(fill)
            return await super().open_orders()

    s.broker.__class__ = Slow
    await s.actor.reconcile("test")
    assert s.portfolio.position("AAPL") == 10 and s.portfolio.duplicate_fills == 2
    assert s.portfolio.frozen is False and s.actor.differences == []


@pytest.mark.anyio
async def test_an_order_approved_but_not_yet_sent_survives_a_reconciliation() -> None:
    s = Setup()
    await s.actor.on_start()
    s.portfolio.add_working("c7", request("c7").intent, pending_since=s.clock.now_ns())
    await s.actor.handle([FeedGap(source="alpaca.trade_updates", start_ns=0, end_ns=1)])
    assert s.portfolio.working("AAPL") == 10  # kept: the venue has not seen it yet
    assert s.actor.differences == []
    s.clock.advance(31)  # still not at the venue half a minute later: it never will be
    await s.actor.reconcile("test")
    assert s.portfolio.orders == {} and s.portfolio.pending == {}
    assert s.actor.differences == ["order c7: approved, never seen at the venue"]


@pytest.mark.anyio
async def test_crypto_positions_come_back_under_the_daemons_names() -> None:
    class AlpacaNames(SimBroker):
        async def positions(self) -> dict[str, Decimal]:
            return {"BTCUSD": Decimal("0.5"), "AAPL": Decimal(3)}

    s = Setup(AlpacaNames)
    s.risk.crypto = frozenset({"BTC/USD"})
    s.actor = BrokerActor(Mailbox("broker", 10), s.broker, s.risk, s.publish, s.clock)
    await s.actor.on_start()
    assert s.portfolio.position("BTC/USD") == Decimal("0.5")
    assert s.portfolio.position("BTCUSD") == 0 and s.portfolio.position("AAPL") == 3


@pytest.mark.anyio
async def test_a_restart_reconciles_what_the_venue_holds() -> None:
    s = Setup()
    await s.broker.submit(request("c1"))  # before the "restart": filled at the venue
    await s.broker.on_market([trade(100.0)])
    await s.broker.submit(request("c2", qty="5", limit="50"))  # still open at the venue
    s.published.clear()
    fresh = Portfolio()  # the restarted daemon knows nothing
    s.risk.portfolio = s.actor.portfolio = s.portfolio = fresh
    await s.actor.on_start()
    assert fresh.position("AAPL") == 10
    assert set(fresh.orders) == {"c2"} and fresh.working("AAPL") == 5
    assert s.actor.differences == [
        "position AAPL: venue 10, local 0",
        "order c2: open at the venue, unknown locally",
        f"fill {s.broker._fills[0].execution_id} (buy 10 AAPL at 100.0000): missed by the stream",
    ]
    # The stream now delivers that fill late: it is not applied twice.
    (missed,) = [u for u in s.broker.orders.values() if u.client_order_id == "c1"]
    late = OrderUpdate(
        event="fill",
        order=missed,
        execution_id=s.broker._fills[0].execution_id,
        qty=Decimal(10),
        price=Decimal(100),
    )
    assert not fresh.apply(late) and fresh.position("AAPL") == 10
    # The same decision replayed after the restart: the venue has it, filled; nothing new.
    await s.actor.handle([request("c1")])
    assert [u.event for u in s.published] == ["fill"] and s.published[0].qty is None
    assert s.broker.stats.duplicates == 1 and s.broker.stats.submitted == 2


@pytest.mark.anyio
async def test_the_order_stream_reconnecting_triggers_a_reconciliation() -> None:
    s = Setup()
    await s.actor.on_start()
    assert s.actor.reconciliations == 1 and s.actor.differences == []
    await s.actor.handle([FeedGap(source="finnhub", start_ns=0, end_ns=1)])
    assert s.actor.reconciliations == 1  # a market feed's gap is not the broker's business
    await s.broker.submit(request("c9"))  # an order the daemon missed while disconnected
    await s.actor.handle([FeedGap(source="alpaca.trade_updates", start_ns=0, end_ns=1)])
    assert s.actor.reconciliations == 2
    assert s.actor.differences == ["order c9: open at the venue, unknown locally"]


@pytest.mark.anyio
async def test_a_venue_that_cannot_be_asked_halts_trading() -> None:
    class Unreachable(SimBroker):
        calls = 0

        async def open_orders(self) -> list[Order]:
            self.calls += 1
            raise BrokerUnavailableError("connection refused")

    s = Setup(Unreachable)
    done = anyio.Event()

    async def start() -> None:
        await s.actor.on_start()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        with anyio.fail_after(5):
            while not done.is_set():  # the retries wait on the manual clock: move it on
                await anyio.sleep(0.01)
                s.clock.advance(1)
    assert s.clock.now_ns() - T0 >= 3 * 10**9  # it waited 1 s, then 2 s, between attempts
    assert isinstance(s.broker, Unreachable) and s.broker.calls == 3
    assert s.risk.state is RiskState.HALTED
    assert s.risk.reason == "reconciliation failed: connection refused"
    assert not s.risk.reconciling


@pytest.mark.anyio
async def test_fills_since_the_last_reconciliation_are_asked_for() -> None:
    asked: list[int] = []

    class Recording(SimBroker):
        async def fills(self, since_ns: int) -> list[Fill]:
            asked.append(since_ns)
            return await super().fills(since_ns)

    s = Setup(Recording)
    await s.actor.on_start()
    await s.actor.handle([request("c1"), trade(100.0, 7)])
    await s.actor.reconcile("test")
    await s.actor.reconcile("test")
    day_before = T0 - 86_400 * 10**9  # at start: the last day's fills
    # Each reconciliation asks twice: before and after the positions.
    assert asked == [day_before] * 4 + [T0 + 7 * 10**9] * 2


@pytest.mark.anyio
async def test_unknown_outcomes_in_one_batch_lead_to_one_reconciliation() -> None:
    class Failing(SimBroker):
        async def submit(self, request: OrderRequest, go: Gate | None = None) -> Order:
            await anyio.sleep(0)  # side by side in the task group
            raise BrokerUnavailableError("timed out", client_order_id=request.client_order_id)

    s = Setup(Failing)
    await s.actor.on_start()
    for coid in ("c1", "c2", "c3"):
        s.portfolio.add_working(coid, request(coid).intent, pending_since=s.clock.now_ns())
    await s.actor.handle([request("c1"), request("c2"), request("c3")])
    assert s.actor.failed == {"unavailable": 3}
    assert s.actor.reconciliations == 2  # the start, then one for the batch
    assert s.portfolio.orders == {} and not s.portfolio.frozen and not s.risk.reconciling


@pytest.mark.anyio
async def test_a_fill_between_the_fills_and_the_positions_requests_counts_once() -> None:
    """It is in the positions the venue gives, and the second fills request lists it: marked
    as applied, so the stream's report of it is not added again."""
    s = Setup()
    await s.actor.on_start()
    s.portfolio.add_working("c1", request("c1").intent, pending_since=s.clock.now_ns())
    await s.broker.submit(request("c1"))
    stream: list[OrderUpdate] = []

    class Racing(SimBroker):
        async def open_orders(self) -> list[Order]:
            if not stream:  # the fill happens now, after the first fills request
                s.published.clear()
                await SimBroker.on_market(self, [trade(100.0, 1)])
                stream.extend(u for u in s.published if type(u) is OrderUpdate)
            return await super().open_orders()

    s.broker.__class__ = Racing
    s.clock.set(T0 + 2 * 10**9)  # the fill (at T0 + 1 s) is before the positions request
    await s.actor.reconcile("test")  # the stream's report arrives meanwhile: held, then skipped
    assert s.portfolio.position("AAPL") == 10
    for update in stream:  # the stream delivers it after the reconciliation
        s.portfolio.apply(update)
    assert s.portfolio.position("AAPL") == 10


@pytest.mark.anyio
async def test_a_fill_inside_the_positions_counts_once_whatever_the_venues_clock_says() -> None:
    """A fill made as the positions are asked for is in them, though its stamp is later than
    the venue's clock read just before (a skew, or a venue stamping fills with the trade's
    time): the snapshot is taken again until no execution came in between, not cut by time."""
    s = Setup()
    await s.actor.on_start()
    s.portfolio.add_working("c1", request("c1").intent, pending_since=s.clock.now_ns())
    await s.broker.submit(request("c1"))
    stream: list[OrderUpdate] = []

    class Racing(SimBroker):
        async def positions(self) -> dict[str, Decimal]:
            if not stream:  # the fill happens now, stamped 5 s after the clock just read
                s.published.clear()
                await SimBroker.on_market(self, [trade(100.0, 5)])
                stream.extend(u for u in s.published if type(u) is OrderUpdate)
            return await super().positions()

        async def now_ns(self) -> int:
            return T0 + 10**9

    s.broker.__class__ = Racing
    await s.actor.reconcile("test")
    assert s.portfolio.position("AAPL") == 10
    for update in stream:  # the stream delivers it after the reconciliation
        s.portfolio.apply(update)
    assert s.portfolio.position("AAPL") == 10
    assert s.actor.inconsistent_snapshots == 0


def _closed_bus() -> Callable[[list[Any]], Awaitable[None]]:
    closed: Mailbox[Any] = Mailbox("risk", 10)
    closed.close()

    async def publish(items: list[Any]) -> None:
        await closed.send_many(items)

    return publish


class _Refusing(SimBroker):
    async def submit(self, request: OrderRequest, go: Gate | None = None) -> Order:
        if go is not None and (reason := go()) is not None:  # as the adapters do, first
            raise OrderWithdrawnError(reason, client_order_id=request.client_order_id)
        raise OrderRejectedError("insufficient buying power", status=403, code=40310000)


@pytest.mark.anyio
@pytest.mark.parametrize("mark", ["risk stopping", "own mailbox closed"])
async def test_an_update_made_while_the_bus_is_closed_during_a_stop_is_counted(mark: str) -> None:
    # A stop closes the risk mailbox while a submit is still out; its answer (a rejection, or
    # an order the venue had already finished) then has nowhere to go. Seen in the reliability
    # suite's kill -9 runs: the actor crashed and its supervisor restarted it mid-stop.
    s = Setup(_Refusing)
    actor = BrokerActor(Mailbox("broker", 10), s.broker, s.risk, _closed_bus(), s.clock)
    if mark == "risk stopping":
        s.risk.stopping = True  # on_stop = "cancel": set before the sweep
    else:
        actor.mailbox.close()  # on_stop = "keep": closed after the risk actor's drained
    await actor.handle([request("c1"), request("c2")])
    # Once risk is stopping, nothing is sent: withdrawn, and that too has nowhere to go.
    expected = {"withdrawn": 2} if mark == "risk stopping" else {"rejected": 2}
    assert actor.undelivered == 2 and actor.failed == expected


@pytest.mark.anyio
async def test_a_closed_bus_while_running_is_a_fault_not_swallowed() -> None:
    s = Setup(_Refusing)
    actor = BrokerActor(Mailbox("broker", 10), s.broker, s.risk, _closed_bus(), s.clock)
    with pytest.raises(anyio.ClosedResourceError):
        await actor.handle([request("c1")])
    assert actor.undelivered == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("switch", "withdrawn"),
    [("halted", ["c1", "c2"]), ("reducing", ["c1"]), ("stopping", ["c1", "c2"])],
)
async def test_approved_orders_waiting_for_the_broker_obey_a_later_halt(
    switch: str, withdrawn: list[str]
) -> None:
    """A backlog of approved orders (slow submits) must not leak out after a halt, a reduce-only
    switch or the start of a stop: each is checked again when its turn comes."""
    s = Setup()
    await s.actor.on_start()
    s.portfolio.apply(
        OrderUpdate(
            event="fill",
            order=Order(id="o0", client_order_id="c0", symbol="AAPL", side="buy"),
            execution_id="e0",
            qty=Decimal(10),
            price=Decimal(100),
        )
    )
    buy, sell = request("c1", "buy", "5"), request("c2", "sell", "5")
    for queued in (buy, sell):
        s.portfolio.add_working(queued.client_order_id, queued.intent, pending_since=T0)
    if switch == "stopping":
        s.risk.stopping = True
    else:
        s.risk.set_state(RiskState(switch), "operator says", "operator")
    await s.actor.handle([trade(100.0, 0), buy, sell, trade(100.0, 1)])
    assert [u.order.client_order_id for u in s.events("rejected")] == withdrawn
    assert s.actor.failed == {"withdrawn": len(withdrawn)}
    assert s.actor.sent == 2 - len(withdrawn)  # under REDUCING the sell still goes
    assert s.portfolio.working("AAPL") == 0 and s.portfolio.pending == {}
