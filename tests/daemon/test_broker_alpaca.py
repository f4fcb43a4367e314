"""The Alpaca broker: the real alpaca-py client against a scripted Alpaca REST server on
loopback. Every fault ends in one order at the venue or a typed error, never in two orders."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import anyio
import msgspec
import pytest
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from structlog.testing import capture_logs

from tickd.codecs.schema import OrderUpdate
from tickd.codecs.timestamps import parse_rfc3339_ns
from tickd.daemon.actors import Mailbox
from tickd.daemon.broker.actor import BrokerActor
from tickd.daemon.broker.alpaca import (
    AlpacaBroker,
    AlpacaBrokerSettings,
    AlpacaBrokerStats,
)
from tickd.daemon.broker.base import (
    BrokerUnavailableError,
    MalformedResponseError,
    OrderRejectedError,
    OrderRequest,
    OrderWithdrawnError,
)
from tickd.daemon.broker.ratelimit import TokenBucket
from tickd.daemon.clock import Clock, ManualClock
from tickd.daemon.config import RiskConfig
from tickd.daemon.portfolio import Portfolio
from tickd.daemon.risk import RiskEngine
from tickd.strategies.base import OrderIntent

from .alpaca_rest_server import AlpacaRestServer, Fault, error, garbage, late, lost
from .feed_kit import QuickClock

pytestmark = pytest.mark.anyio
S = 1_000_000_000
KEY = "PKTESTKEY0123456789"
SECRET = "sekret-alpaca-secret-456"
CID = "ema-cross-AAPL-0001"
TIMEOUT = 0.2
LATE = 0.5  # a scripted delay well past the client's timeout


@pytest.fixture
def server() -> Iterator[AlpacaRestServer]:
    with AlpacaRestServer().running() as running:
        yield running


def broker_for(
    server: AlpacaRestServer, clock: Clock | None = None, **settings: Any
) -> AlpacaBroker:
    chosen = {"url_override": server.url, "timeout": TIMEOUT, "retry_backoff": 0.01} | settings
    return AlpacaBroker(KEY, SECRET, AlpacaBrokerSettings(**chosen), clock=clock or QuickClock())


def order_request(cid: str = CID, symbol: str = "AAPL", **intent: Any) -> OrderRequest:
    fields: dict[str, Any] = {"side": "buy", "qty": Decimal("10")} | intent
    return OrderRequest(
        client_order_id=cid,
        intent=OrderIntent(
            strategy="ema_cross", symbol=symbol, event_id=f"Bar:{symbol}:1", ts_event=1, **fields
        ),
    )


async def wait_until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await anyio.sleep(0.005)


# --- submit ---------------------------------------------------------------------------------


async def test_an_accepted_order_is_returned_as_the_schema_order(server: AlpacaRestServer) -> None:
    broker = broker_for(server)
    request = order_request(
        type="limit", limit_price=Decimal("187.31"), time_in_force="gtc", qty=Decimal("0.5")
    )
    with capture_logs() as logs:
        order = await broker.submit(request)

    held = server.orders[CID]
    assert AlpacaOrder(**held).client_order_id == CID  # the server's order is Alpaca's shape
    assert (order.id, order.client_order_id, order.symbol) == (held["id"], CID, "AAPL")
    assert (order.side, order.order_type, order.time_in_force) == ("buy", "limit", "gtc")
    assert (order.qty, order.limit_price, order.status) == (
        Decimal("0.5"),
        Decimal("187.31"),
        "accepted",
    )
    assert order.created_at == parse_rfc3339_ns(held["created_at"])  # exact nanoseconds
    [post] = server.received
    assert post.route == "submit"
    assert post.body == {
        "symbol": "AAPL",
        "qty": 0.5,
        "side": "buy",
        "type": "limit",
        "time_in_force": "gtc",
        "client_order_id": CID,
        "limit_price": 187.31,
    }
    assert post.headers["apca-api-key-id"] == KEY
    assert broker.stats == AlpacaBrokerStats(submitted=1)
    assert [e["event"] for e in logs] == ["order_submitted"]
    assert logs[0]["client_order_id"] == CID


async def test_a_reply_too_late_resolves_to_the_order_the_venue_holds(
    server: AlpacaRestServer,
) -> None:
    server.faults["submit"] = [late(LATE)]
    broker = broker_for(server)
    order = await broker.submit(order_request())

    assert list(server.orders) == [CID]
    assert order.id == server.orders[CID]["id"]
    assert [r.route for r in server.received] == ["submit", "lookup"]
    assert server.received[1].query == {"client_order_id": CID}
    assert broker.stats == AlpacaBrokerStats(submitted=1, duplicates_resolved=1, timeouts=1)


@pytest.mark.parametrize(
    ("fault", "timeouts"),
    [(lost(LATE), 1), (Fault(hang_up=True), 0)],
    ids=["no-answer", "connection-closed"],
)
async def test_a_request_that_never_arrived_is_sent_again_with_the_same_id(
    server: AlpacaRestServer, fault: Fault, timeouts: int
) -> None:
    server.faults["submit"] = [fault]
    broker = broker_for(server)
    order = await broker.submit(order_request())

    assert list(server.orders) == [CID]
    assert order.id == server.orders[CID]["id"]
    assert [r.route for r in server.received] == ["submit", "lookup", "submit"]
    assert [r.body["client_order_id"] for r in server.requests("submit")] == [CID, CID]
    assert broker.stats == AlpacaBrokerStats(submitted=1, timeouts=timeouts, retries=1)


async def test_a_duplicate_id_returns_the_order_already_placed(server: AlpacaRestServer) -> None:
    earlier = await broker_for(server).submit(order_request())  # before a restart, say
    broker = broker_for(server)
    order = await broker.submit(order_request())

    assert list(server.orders) == [CID]
    assert order == earlier
    assert [r.route for r in server.received] == ["submit", "submit", "lookup"]
    assert broker.stats == AlpacaBrokerStats(submitted=1, duplicates_resolved=1)


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, 40310000, "insufficient buying power"),
        (422, 40010001, "qty must be > 0"),  # 40010001 is not only the duplicate-id code
        (400, 40010000, "request body format is invalid"),
    ],
)
async def test_a_refusal_raises_order_rejected_with_alpacas_code(
    server: AlpacaRestServer, status: int, code: int, message: str
) -> None:
    server.faults["submit"] = [error(status, code, message)]
    broker = broker_for(server)
    with pytest.raises(OrderRejectedError) as caught:
        await broker.submit(order_request())

    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.client_order_id == CID
    assert message in str(caught.value)
    assert server.orders == {}
    assert [r.route for r in server.received] == ["submit"]
    assert broker.stats == AlpacaBrokerStats(rejected=1)


async def test_a_429_waits_retry_after_then_sends_again(server: AlpacaRestServer) -> None:
    server.faults["submit"] = [error(429, 42910000, "rate limit exceeded", retry_after="1")]
    clock = QuickClock()
    broker = broker_for(server, clock)
    order = await broker.submit(order_request())

    assert list(server.orders) == [CID]
    assert order.id == server.orders[CID]["id"]
    assert [r.route for r in server.received] == ["submit", "submit"]  # a 429 did nothing
    assert clock.waits == [1.0]
    assert broker.stats == AlpacaBrokerStats(submitted=1, retries=1, rate_limited_waits=1)


@pytest.mark.parametrize(
    ("fault", "routes", "resolved"),
    [
        (error(500, 50010000, "internal server error"), ["submit", "lookup", "submit"], 0),
        (
            Fault(status=502, body=b"<html>502 Bad Gateway</html>"),
            ["submit", "lookup", "submit"],
            0,
        ),
        (error(500, 50010000, "internal server error", process=True), ["submit", "lookup"], 1),
    ],
    ids=["5xx-not-placed", "5xx-html-body", "5xx-but-placed"],
)
async def test_a_5xx_is_looked_up_then_sent_again(
    server: AlpacaRestServer, fault: Fault, routes: list[str], resolved: int
) -> None:
    server.faults["submit"] = [fault]
    broker = broker_for(server)
    order = await broker.submit(order_request())

    assert list(server.orders) == [CID]
    assert order.id == server.orders[CID]["id"]
    assert [r.route for r in server.received] == routes
    assert broker.stats == AlpacaBrokerStats(
        submitted=1, duplicates_resolved=resolved, retries=1 - resolved
    )


async def test_a_failed_lookup_is_followed_by_a_retry_that_meets_the_duplicate(
    server: AlpacaRestServer,
) -> None:
    server.faults["submit"] = [error(500, 50010000, "internal server error", process=True)]
    server.faults["lookup"] = [error(503, 50310000, "service unavailable")]
    broker = broker_for(server)
    order = await broker.submit(order_request())

    assert list(server.orders) == [CID]
    assert order.id == server.orders[CID]["id"]
    assert [r.route for r in server.received] == ["submit", "lookup", "submit", "lookup"]
    assert broker.stats == AlpacaBrokerStats(submitted=1, duplicates_resolved=1, retries=1)


@pytest.mark.parametrize(
    ("fault", "status", "timeouts"),
    [(error(500, 50010000, "internal server error"), 500, 4), (lost(LATE), None, 4)],
    ids=["5xx", "no-answer"],
)
async def test_repeated_failures_raise_broker_unavailable_and_place_nothing(
    server: AlpacaRestServer, fault: Fault, status: int | None, timeouts: int
) -> None:
    server.faults["submit"] = [fault] * 4
    broker = broker_for(server, retries=3)
    with capture_logs() as logs, pytest.raises(BrokerUnavailableError) as caught:
        await broker.submit(order_request())

    assert (caught.value.client_order_id, caught.value.status) == (CID, status)
    assert server.orders == {}
    assert [r.route for r in server.received] == ["submit", "lookup"] * 4
    assert broker.stats == AlpacaBrokerStats(
        retries=3, unavailable=1, timeouts=timeouts if status is None else 0
    )
    assert logs[-1]["event"] == "broker_unavailable"
    assert all(e["client_order_id"] == CID for e in logs)
    assert SECRET not in repr(logs) + str(caught.value) + repr(broker)


# --- malformed answers ----------------------------------------------------------------------


async def test_an_unreadable_accept_is_resolved_by_the_lookup(server: AlpacaRestServer) -> None:
    server.faults["submit"] = [garbage()]
    broker = broker_for(server)
    order = await broker.submit(order_request())

    assert order.id == server.orders[CID]["id"]
    assert [r.route for r in server.received] == ["submit", "lookup"]
    assert broker.stats == AlpacaBrokerStats(submitted=1, duplicates_resolved=1, malformed=1)


async def test_an_unreadable_lookup_raises_malformed_response(server: AlpacaRestServer) -> None:
    server.faults["submit"] = [late(LATE)]
    server.faults["lookup"] = [garbage(b'{"client_order_id": "no id"}')]
    broker = broker_for(server)
    with pytest.raises(MalformedResponseError) as caught:
        await broker.submit(order_request())

    assert caught.value.client_order_id == CID
    assert "malformed order" in str(caught.value)
    assert broker.stats == AlpacaBrokerStats(timeouts=1, malformed=1)


@pytest.mark.parametrize(
    ("route", "body", "call", "reason"),
    [
        ("orders", b'[{"client_order_id": "x"}]', AlpacaBroker.open_orders, "malformed order"),
        ("orders", b'{"orders": []}', AlpacaBroker.open_orders, "malformed open orders"),
        ("positions", b'[{"symbol": "AAPL"}]', AlpacaBroker.positions, "malformed positions"),
        ("positions", b"<html>oops</html>", AlpacaBroker.positions, "not JSON"),
        ("activities", b'[{"id": 1}]', lambda b: b.fills(0), "malformed fill activities"),
    ],
)
async def test_a_malformed_body_raises_a_typed_error(
    server: AlpacaRestServer,
    route: str,
    body: bytes,
    call: Callable[[AlpacaBroker], Awaitable[Any]],
    reason: str,
) -> None:
    server.faults[route] = [garbage(body)]
    broker = broker_for(server)
    with pytest.raises(MalformedResponseError, match=reason):
        await call(broker)
    assert broker.stats.malformed == 1


# --- reads, restart, cancel -----------------------------------------------------------------


async def test_after_a_restart_a_new_broker_sees_open_orders_positions_and_fills(
    server: AlpacaRestServer,
) -> None:
    before = await broker_for(server).submit(
        order_request("a-1", type="limit", limit_price=Decimal("150"))
    )
    first = broker_for(server)
    await first.submit(
        order_request(
            "m-1", "MSFT", side="sell", qty=Decimal("5"), type="limit", limit_price=Decimal("400")
        )
    )
    await first.submit(order_request("t-1", "TSLA", qty=Decimal("3")))
    tsla_fill = server.fill("t-1", "250.5")
    aapl_fill = server.fill("a-1", "150", qty="4")
    server.positions["NVDA"] = Decimal("-7")

    restarted = broker_for(server)
    orders = await restarted.open_orders()
    positions = await restarted.positions()
    fills = await restarted.fills(parse_rfc3339_ns(tsla_fill["transaction_time"]))

    assert [o.client_order_id for o in orders] == ["m-1", "a-1"]  # Alpaca lists newest first
    assert orders[1].id == before.id
    assert (orders[1].status, orders[1].filled_qty) == ("partially_filled", Decimal("4"))
    assert [AlpacaPosition(**p).symbol for p in server.position_objects()] == list(server.positions)
    assert positions == {"AAPL": Decimal("4"), "TSLA": Decimal("3"), "NVDA": Decimal("-7")}
    assert [(f.client_order_id, f.symbol, f.side, f.qty, f.price) for f in fills] == [
        ("t-1", "TSLA", "buy", Decimal("3"), Decimal("250.5")),
        ("a-1", "AAPL", "buy", Decimal("4"), Decimal("150")),
    ]
    assert [f.execution_id for f in fills] == [tsla_fill["id"], aapl_fill["id"]]
    assert fills[1].ts_event == parse_rfc3339_ns(aapl_fill["transaction_time"])
    assert fills[1].order_id == before.id
    later = await restarted.fills(fills[1].ts_event)  # at or after
    assert [f.execution_id for f in later] == [aapl_fill["id"]]


async def test_fills_follow_pages_and_look_each_order_up_once(server: AlpacaRestServer) -> None:
    broker = broker_for(server)
    await broker.submit(order_request(qty=Decimal("150")))
    for _ in range(150):
        server.fill(CID, "101.25", qty="1")

    fills = await broker.fills(0)

    assert len(fills) == 150
    assert {f.client_order_id for f in fills} == {CID}
    pages = server.requests("activities")
    assert [("page_token" in p.query, p.query["direction"]) for p in pages] == [
        (False, "asc"),
        (True, "asc"),
    ]
    assert len(server.requests("order")) == 1
    await broker.fills(0)  # a reconciliation lists them again: no lookup spent twice
    assert len(server.requests("order")) == 1


async def test_fills_of_many_orders_name_them_from_one_listing(server: AlpacaRestServer) -> None:
    """A restart's reconciliation lists a day of fills: their orders are named from a listing
    of orders (a few requests), not one lookup each against 200 requests a minute."""
    broker = broker_for(server)
    for n in range(8):
        await broker.submit(order_request(f"c{n}"))
        server.fill(f"c{n}", "101.25")
    restarted = broker_for(server)  # remembers nothing
    fills = await restarted.fills(0)
    assert sorted(f.client_order_id for f in fills) == [f"c{n}" for n in range(8)]
    assert len(server.requests("orders")) == 1 and server.requests("order") == []


async def test_cancel_asks_the_venue_and_a_refused_cancel_raises(server: AlpacaRestServer) -> None:
    broker = broker_for(server)
    order = await broker.submit(order_request(type="limit", limit_price=Decimal("1")))

    await broker.cancel(order.id)
    assert server.orders[CID]["status"] == "canceled"
    assert await broker.open_orders() == []
    with pytest.raises(OrderRejectedError) as again:
        await broker.cancel(order.id)
    assert (again.value.status, again.value.code) == (422, 42210000)
    with pytest.raises(OrderRejectedError, match="invalid request"):
        await broker.cancel("not-a-uuid")  # alpaca-py refuses it before sending


async def test_reads_retry_transient_failures_then_give_up(server: AlpacaRestServer) -> None:
    server.positions["AAPL"] = Decimal("2")
    server.faults["positions"] = [error(503, 50310000, "unavailable"), late(LATE)]
    broker = broker_for(server)
    assert await broker.positions() == {"AAPL": Decimal("2")}
    assert broker.stats == AlpacaBrokerStats(retries=2, timeouts=1)

    server.faults["positions"] = [error(429, 42910000, "slow down", retry_after="soon")] * 4
    with pytest.raises(BrokerUnavailableError) as caught:
        await broker.positions()
    assert caught.value.status == 429
    assert broker.stats.unavailable == 1
    assert broker.stats.rate_limited_waits == 3


# --- settings, rate limit, threads ----------------------------------------------------------


def test_paper_is_the_default_and_settings_are_checked() -> None:
    assert AlpacaBrokerSettings().paper is True
    assert "paper-api" in AlpacaBroker(KEY, SECRET)._client._base_url
    with pytest.raises(ValueError, match="workers"):
        AlpacaBrokerSettings(workers=0)
    with pytest.raises(ValueError, match="timeout"):
        AlpacaBrokerSettings(timeout=0)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"paper": False, "live": True}, AlpacaBrokerSettings)


async def test_the_bucket_allows_a_small_burst_then_one_call_per_interval() -> None:
    """200 a minute: 10 at once after a quiet spell (any 60 s window sees at most 210, not the
    400 a minute-sized burst would allow), then one every 0.3 s, waiters in arrival order."""
    clock = ManualClock(5 * S)
    bucket = TokenBucket(200, clock=clock)
    assert bucket.burst == 10
    for _ in range(10):
        assert await bucket.acquire() == 0.0

    waited: list[float] = []

    async def take() -> None:
        waited.append(await bucket.acquire())

    async with anyio.create_task_group() as group:
        group.start_soon(take)
        group.start_soon(take)
        await wait_until(lambda: clock.next_deadline_ns is not None)
        assert clock.next_deadline_ns == 5 * S + 300_000_000  # a token every 60 s / 200
        clock.advance(0.3)
        await wait_until(lambda: len(waited) == 1)
        assert waited == [0.3]
        clock.advance(0.3)
    assert waited == [0.3, 0.6]  # waiters queue in arrival order

    clock.advance(60)  # a quiet minute fills the bucket again, no more
    for _ in range(10):
        assert await bucket.acquire() == 0.0
    with anyio.move_on_after(0.05) as scope:
        await bucket.acquire()
    assert scope.cancelled_caught  # and the 11th waits again


async def test_a_bucket_can_be_given_a_larger_burst() -> None:
    clock = ManualClock(5 * S)
    bucket = TokenBucket(200, burst=200, clock=clock)
    for _ in range(200):
        assert await bucket.acquire() == 0.0
    with anyio.move_on_after(0.05) as scope:
        await bucket.acquire()
    assert scope.cancelled_caught


def test_a_token_bucket_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(10, burst=0)


async def test_every_broker_call_takes_a_token_from_one_bucket(server: AlpacaRestServer) -> None:
    clock = ManualClock(S)
    broker = broker_for(server, clock, rate_per_minute=1)
    assert await broker.positions() == {}

    async with anyio.create_task_group() as group:
        group.start_soon(broker.open_orders)
        await wait_until(lambda: clock.next_deadline_ns is not None)
        assert server.requests("orders") == []
        clock.advance(60)
    assert len(server.requests("orders")) == 1
    assert broker.stats.rate_limited_waits == 1


async def test_an_order_waiting_for_a_token_is_withdrawn_if_its_gate_closes_meanwhile(
    server: AlpacaRestServer,
) -> None:
    """A kill switch thrown while orders wait on the rate limit must hold them back: the gate
    is asked after the wait, right before the request leaves."""
    clock = ManualClock(S)
    broker = broker_for(server, clock, rate_per_minute=1)
    halted: list[str] = []
    gate = lambda: halted[0] if halted else None  # noqa: E731
    await broker.submit(order_request("first"), go=gate)  # the bucket's one token
    withdrawn: list[str] = []

    async def second() -> None:
        try:
            await broker.submit(order_request("second"), go=gate)
        except OrderWithdrawnError as exc:
            withdrawn.append(str(exc))

    async with anyio.create_task_group() as group:
        group.start_soon(second)
        await wait_until(lambda: clock.next_deadline_ns is not None)  # waiting for a token
        halted.append("trading is halted")
        clock.advance(60)
    assert withdrawn and "trading is halted" in withdrawn[0]
    assert [r.body["client_order_id"] for r in server.requests("submit")] == ["first"]


async def test_calls_run_in_a_bounded_pool_off_the_event_loop(server: AlpacaRestServer) -> None:
    gate = threading.Event()
    server.faults["positions"] = [Fault(gate=gate, process=True)] * 3
    broker = broker_for(server, workers=2, timeout=5.0)
    results: list[dict[str, Decimal]] = []
    ticks = 0

    async def positions() -> None:
        results.append(await broker.positions())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(positions)
            while len(server.requests("positions")) < 2:  # the loop runs while two calls block
                ticks += 1
                await anyio.sleep(0.005)
            await anyio.sleep(0.1)
            assert len(server.requests("positions")) == 2  # the third waits for a worker
            gate.set()
    assert ticks > 0
    assert results == [{}, {}, {}]
    assert len(server.requests("positions")) == 3


async def test_a_restarted_daemon_reconciles_then_sends_a_replayed_decision_only_once(
    server: AlpacaRestServer,
) -> None:
    """The broker actor over the real client: the venue's open orders, positions and fills
    become the portfolio's before anything trades, and the decision the daemon was making when
    it went down, made again, resolves to the order the venue already has."""
    before = broker_for(server)
    await before.submit(order_request("open-1", type="limit", limit_price=Decimal("150")))
    await before.submit(order_request("done-1", "MSFT", qty=Decimal("2")))
    server.fill("done-1", "401.25")

    published: list[Any] = []

    async def publish(items: list[Any]) -> None:
        published.extend(items)

    portfolio = Portfolio()
    clock = ManualClock(10**18)
    risk = RiskEngine(RiskConfig(), portfolio, ["AAPL", "MSFT"], [], clock)
    actor = BrokerActor(Mailbox("broker", 10), broker_for(server), risk, publish, clock)
    await actor.on_start()
    assert portfolio.position("MSFT") == 2 and portfolio.working("AAPL") == 10
    assert len(actor.differences) == 3  # the position, the open order, the missed fill
    await actor.handle([order_request("done-1", "MSFT", qty=Decimal("2"))])
    assert len(server.requests("submit")) == 3  # the replay was sent, and refused as a duplicate
    assert len(server.orders) == 2 and server.orders["done-1"]["status"] == "filled"
    (finished,) = [u for u in published if type(u) is OrderUpdate]
    assert finished.event == "fill" and finished.qty is None  # done; its fill is in positions
    assert portfolio.position("MSFT") == 2


async def test_a_waiter_that_gives_up_hands_its_slot_back() -> None:
    """Orders withdrawn while they wait on the rate limit must not leave their slots taken: the
    stop's cancel sweep comes after them."""
    clock = ManualClock(S)
    bucket = TokenBucket(60, burst=1, clock=clock)  # one a second
    assert await bucket.acquire() == 0.0
    halted = False
    results: list[float | None] = []

    async def wait() -> None:
        results.append(await bucket.acquire(lambda: halted))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(wait)
        await wait_until(lambda: clock.next_deadline_ns is not None)
        halted = True
        clock.advance(0.1)  # their next look
    assert results == [None] * 5
    clock.advance(1.0)
    assert await bucket.acquire() == 0.0  # the five slots came back: a token is there
