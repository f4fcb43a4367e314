"""The fake exchange's trading side on loopback, driven by the clients that talk to Alpaca: the
official alpaca-py ``TradingClient`` and ``TradingStream`` (pointed at it with ``url_override``,
otherwise unmodified), tickd's ``AlpacaBroker`` and its ``TradeUpdatesFeed``; then every fault
the chaos switch can inject on the trading side."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import anyio
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest
from alpaca.trading.stream import TradingStream

from tickd.codecs.schema import OrderUpdate, Trade
from tickd.daemon.broker.alpaca import AlpacaBroker, AlpacaBrokerSettings
from tickd.daemon.broker.base import OrderRequest
from tickd.daemon.fake_exchange.chaos import Chaos
from tickd.daemon.fake_exchange.matching import MatchingEngine, NewOrder
from tickd.daemon.fake_exchange.trading import TradingServer
from tickd.daemon.feeds.base import FeedGap
from tickd.daemon.feeds.trade_updates import TradeUpdatesFeed, TradeUpdatesSettings
from tickd.strategies.base import OrderIntent

from .feed_kit import QuickClock, Sink

pytestmark = pytest.mark.anyio
KEY = "PKFAKEKEY0123456789"
SECRET = "fake-exchange-secret"
T = TypeVar("T")


@dataclass
class Exchange:
    engine: MatchingEngine
    server: TradingServer
    chaos: Chaos

    def client(self, key: str = KEY) -> TradingClient:
        return TradingClient(key, SECRET, paper=True, url_override=self.server.url)

    def price(self, value: float, symbol: str = "AAPL", size: int = 10_000) -> None:
        self.engine.on_market(
            [Trade(symbol=symbol, ts_event=time.time_ns(), price=value, size=size)]
        )

    def post_chaos(self, changes: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.server.url}/_chaos", json=changes, timeout=5)


async def call(function: Callable[..., T], *args: Any) -> T:
    """alpaca-py is synchronous: run it in a thread, so the server on this loop can answer."""
    return await anyio.to_thread.run_sync(partial(function, *args))


async def wait_until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.01)


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    chaos = Chaos()
    engine = MatchingEngine(clock_ns=time.time_ns, chaos=chaos, assets=("AAPL",))
    server = TradingServer(engine, key=KEY, secret=SECRET, chaos=chaos)
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.run)
        assert url == server.url and url.startswith("http://127.0.0.1:")
        yield Exchange(engine, server, chaos)
        tg.cancel_scope.cancel()


def market(cid: str, qty: float = 10, side: OrderSide = OrderSide.BUY) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="AAPL", qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=cid
    )


# --- the official alpaca-py clients ---------------------------------------------------------


async def test_the_official_trading_client_trades_against_the_engine(exchange: Exchange) -> None:
    client = exchange.client()
    account = await call(client.get_account)
    assert (account.cash, account.buying_power, account.status) == ("100000", "100000", "ACTIVE")
    assert (await call(client.get_clock)).is_open
    exchange.price(187.31)
    assert [a.symbol for a in await call(client.get_all_assets)] == ["AAPL"]

    bought = await call(client.submit_order, market("m-1"))
    assert (bought.client_order_id, bought.status, bought.filled_qty) == (
        "m-1",
        OrderStatus.FILLED,
        "10",
    )
    assert bought.filled_avg_price == "187.31"
    limit = LimitOrderRequest(
        symbol="AAPL",
        qty=5,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.GTC,
        limit_price=150.25,
        client_order_id="l-1",
    )
    resting = await call(client.submit_order, limit)
    assert (resting.status, resting.limit_price) == (OrderStatus.NEW, "150.25")

    assert (await call(client.get_order_by_id, resting.id)).client_order_id == "l-1"
    assert (await call(client.get_order_by_client_id, "m-1")).id == bought.id
    everything = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert [o.client_order_id for o in everything] == ["l-1", "m-1"]  # newest first
    assert [o.id for o in await call(client.get_orders)] == [resting.id]  # open ones

    await call(client.cancel_order_by_id, resting.id)
    assert (await call(client.get_order_by_id, resting.id)).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as duplicate:
        await call(client.submit_order, market("l-1"))
    assert duplicate.value.status_code == 422
    assert (duplicate.value.code, duplicate.value.message) == (
        40010001,
        "client_order_id must be unique",
    )

    [position] = await call(client.get_all_positions)
    assert (position.symbol, position.qty, position.avg_entry_price) == ("AAPL", "10", "187.31")
    exchange.price(190.31)
    position = await call(client.get_open_position, "AAPL")
    assert (position.market_value, position.unrealized_pl) == ("1903.1", "30")
    closing = await call(client.close_position, "AAPL")
    assert (closing.side, closing.qty, closing.status) == ("sell", "10", OrderStatus.FILLED)
    assert await call(client.get_all_positions) == []
    assert (await call(client.get_account)).cash == "100030"

    with pytest.raises(APIError) as unknown:
        await call(client.get_order_by_client_id, "never-sent")
    assert unknown.value.status_code == 404
    with pytest.raises(APIError) as refused:
        await call(exchange.client("PKWRONG").get_account)
    assert refused.value.status_code == 401


async def test_the_official_trading_stream_receives_an_orders_updates() -> None:
    chaos = Chaos()
    engine = MatchingEngine(clock_ns=time.time_ns, chaos=chaos)
    server = TradingServer(engine, key=KEY, secret=SECRET, chaos=chaos)
    received: list[TradeUpdate] = []

    async def on_update(update: TradeUpdate) -> None:
        received.append(update)

    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        stream = TradingStream(KEY, SECRET, paper=True, url_override=server.stream_url)
        stream.subscribe_trade_updates(on_update)
        thread = threading.Thread(target=stream.run, daemon=True)
        thread.start()
        await wait_until(lambda: server.stats.listening == 1)
        engine.on_market([Trade(symbol="AAPL", ts_event=1, price=187.31, size=10_000)])
        engine.submit(
            NewOrder(symbol="AAPL", side="buy", time_in_force="day", type="market", qty=Decimal(3))
        )
        await wait_until(lambda: len(received) == 2)
        await call(stream.stop)
        tg.cancel_scope.cancel()  # the server closes the socket: the stream's loop ends
    await anyio.to_thread.run_sync(thread.join, 10)
    assert not thread.is_alive()
    new, fill = received
    assert (new.event, fill.event) == ("new", "fill")
    assert new.order.id == fill.order.id and fill.order.status == OrderStatus.FILLED
    assert (fill.price, fill.qty, fill.position_qty) == (187.31, 3.0, 3.0)
    assert fill.execution_id is not None


# --- tickd's own clients ------------------------------------------------------------------------


def broker_for(exchange: Exchange, **settings: Any) -> AlpacaBroker:
    chosen = {"url_override": exchange.server.url, "timeout": 2.0, "retry_backoff": 0.01}
    return AlpacaBroker(
        KEY, SECRET, AlpacaBrokerSettings(**(chosen | settings)), clock=QuickClock()
    )


def order_request(cid: str, qty: str = "4") -> OrderRequest:
    intent = OrderIntent(
        strategy="ema_cross", symbol="AAPL", side="buy", qty=Decimal(qty), event_id="e", ts_event=1
    )
    return OrderRequest(client_order_id=cid, intent=intent)


async def test_tickds_broker_submits_looks_up_and_lists_fills(exchange: Exchange) -> None:
    broker = broker_for(exchange)
    since = time.time_ns()
    placed = await broker.submit(order_request("tickd-1", qty="250"))
    assert (placed.client_order_id, placed.status) == ("tickd-1", "new")  # no price yet
    assert [o.id for o in await broker.open_orders()] == [placed.id]

    exchange.engine.on_market(
        [Trade(symbol="AAPL", ts_event=1, price=p, size=100) for p in (10.0, 10.5, 11.0)]
    )
    fills = await broker.fills(since)
    assert [(f.qty, f.price, f.cum_qty) for f in fills] == [
        (Decimal(100), Decimal("10.0"), Decimal(100)),
        (Decimal(100), Decimal("10.5"), Decimal(200)),
        (Decimal(50), Decimal("11.0"), Decimal(250)),
    ]
    assert {f.client_order_id for f in fills} == {"tickd-1"}
    assert await broker.positions() == {"AAPL": Decimal(250)}
    assert await broker.open_orders() == []


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_tickds_trade_updates_feed_receives_partial_fills_then_the_fill(
    exchange: Exchange, encoding: Any
) -> None:
    sink = Sink()
    settings = TradeUpdatesSettings(url=exchange.server.stream_url, encoding=encoding)
    feed = TradeUpdatesFeed(settings, KEY, SECRET, sink.publish, QuickClock(), random.Random(1))
    async with anyio.create_task_group() as tg:
        await tg.start(feed.run)  # returns once the stream listens
        await call(exchange.client().submit_order, market("feed-1", qty=150))
        exchange.engine.on_market(
            [Trade(symbol="AAPL", ts_event=1, price=p, size=100) for p in (20.0, 20.5)]
        )
        await sink.wait_for(3)
        tg.cancel_scope.cancel()
    updates: list[OrderUpdate] = sink.events
    assert [(u.event, u.qty, u.order.filled_qty) for u in updates] == [
        ("new", None, Decimal(0)),
        ("partial_fill", Decimal(100), Decimal(100)),
        ("fill", Decimal(50), Decimal(150)),
    ]
    assert {u.order.client_order_id for u in updates} == {"feed-1"}


# --- chaos ------------------------------------------------------------------------------------


async def test_a_submission_never_answered_is_found_by_its_client_order_id(
    exchange: Exchange,
) -> None:
    assert (await call(exchange.post_chaos, {"submit_timeout_every": 1})).status_code == 200
    broker = broker_for(exchange, timeout=0.3)
    placed = await broker.submit(order_request("held-1"))
    assert placed.client_order_id == "held-1"
    assert (broker.stats.timeouts, broker.stats.duplicates_resolved) == (1, 1)
    assert exchange.server.stats.held == 1
    assert [o.id for o in exchange.engine.list_orders(status="all")] == [placed.id]
    assert exchange.chaos.injected == {"submit_timeout": 1}


async def test_a_failed_submission_answers_500_and_keeps_nothing(exchange: Exchange) -> None:
    exchange.chaos.update({"submit_fail_every": 1})
    client = exchange.client()
    with pytest.raises(APIError) as failed:
        await call(client.submit_order, market("fail-1"))
    assert failed.value.status_code == 500
    with pytest.raises(APIError) as lookup:
        await call(client.get_order_by_client_id, "fail-1")
    assert lookup.value.status_code == 404
    assert exchange.engine.list_orders(status="all") == []


async def test_chaos_switches_at_run_time_and_reports_what_it_injected(exchange: Exchange) -> None:
    client = exchange.client()
    switched = await call(exchange.post_chaos, {"http_error_every": 1})
    assert switched.json()["settings"]["http_error_every"] == 1
    with pytest.raises(APIError) as failed:
        await call(client.get_account)
    assert failed.value.status_code == 500
    await call(exchange.post_chaos, {"http_error_every": 0})
    assert (await call(client.get_account)).status == "ACTIVE"

    state = (await call(requests.get, f"{exchange.server.url}/_chaos")).json()
    assert state["injected"] == {"http_error": 1}
    assert state["settings"]["http_error_every"] == 0
    bad = await call(exchange.post_chaos, {"no_such_fault": 1})
    assert bad.status_code == 422 and bad.json()["code"] == 40010001


async def test_a_restart_refuses_rest_and_drops_the_stream_which_reconnects_with_a_gap(
    exchange: Exchange,
) -> None:
    sink = Sink()
    settings = TradeUpdatesSettings(
        url=exchange.server.stream_url, backoff_initial=0.01, backoff_cap=0.05
    )
    feed = TradeUpdatesFeed(settings, KEY, SECRET, sink.publish, QuickClock(), random.Random(1))
    async with anyio.create_task_group() as tg:
        await tg.start(feed.run)
        assert (await call(exchange.post_chaos, {"restart_for": 60})).status_code == 200
        with pytest.raises(requests.ConnectionError):
            await call(exchange.client().get_account)
        exchange.chaos.update({"restart_for": 0})  # over early (the switch itself is down)

        async def answers() -> bool:
            try:
                await call(exchange.client().get_account)
            except requests.ConnectionError:
                return False
            return True

        with anyio.fail_after(10):
            while not await answers():
                await anyio.sleep(0.02)
        await sink.wait_for(1)  # the stream came back: the feed reports its gap
        tg.cancel_scope.cancel()
    [gap] = sink.events
    assert isinstance(gap, FeedGap) and gap.source == "alpaca.trade_updates"
    assert exchange.chaos.injected == {"restart": 1}
    assert exchange.server.stats.refused >= 1


def rest(exchange: Exchange, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    return requests.request(
        method, exchange.server.url + path, headers=headers, **({"timeout": 5} | kw)
    )


async def test_a_request_the_server_fails_on_costs_that_request_only(exchange: Exchange) -> None:
    def failing() -> Any:
        raise RuntimeError("a bug in a route")

    exchange.engine.account = failing  # type: ignore[method-assign]
    broken = await call(rest, exchange, "GET", "/v2/account")
    assert (broken.status_code, broken.json()["code"]) == (500, 50010000)
    nan = {"symbol": "AAPL", "side": "buy", "type": "market", "time_in_force": "day", "qty": "NaN"}
    refused = await call(partial(rest, json=nan), exchange, "POST", "/v2/orders")
    assert refused.status_code == 422
    exchange.price(100.0)
    await call(exchange.client().submit_order, market("long-1", qty=2))
    bad_close = await call(rest, exchange, "DELETE", "/v2/positions/AAPL?qty=NaN")
    assert bad_close.status_code == 422
    assert [p.symbol for p in await call(exchange.client().get_all_positions)] == ["AAPL"]


async def test_closing_a_position_under_submit_timeout_chaos_is_held_not_fatal(
    exchange: Exchange,
) -> None:
    exchange.price(100.0)
    client = exchange.client()
    await call(client.submit_order, market("long-2", qty=3))
    exchange.chaos.update({"submit_timeout_every": 1})
    with pytest.raises(requests.Timeout):
        await call(partial(rest, timeout=0.5), exchange, "DELETE", "/v2/positions/AAPL")
    assert exchange.server.stats.held == 1
    exchange.chaos.update({"submit_timeout_every": 0})
    assert await call(client.get_all_positions) == []  # the close was kept, and filled


async def test_a_lost_submission_is_never_answered_and_keeps_nothing(exchange: Exchange) -> None:
    exchange.chaos.update({"submit_lost_every": 1})
    body = {
        "symbol": "AAPL",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "qty": "1",
        "client_order_id": "lost-1",
    }
    with pytest.raises(requests.Timeout):
        await call(partial(rest, timeout=0.3, json=body), exchange, "POST", "/v2/orders")
    assert exchange.server.stats.held == 1
    assert exchange.engine.list_orders(status="all") == []
    assert exchange.chaos.injected == {"submit_lost": 1}


@pytest.mark.parametrize(
    ("fault", "status", "kept"),
    [("submit_fail_kept_every", 500, True), ("submit_throttle_every", 429, False)],
)
async def test_a_submission_answered_with_an_error_is_kept_or_not_as_the_fault_says(
    exchange: Exchange, fault: str, status: int, kept: bool
) -> None:
    exchange.chaos.update({fault: 1})
    with pytest.raises(APIError) as failed:
        await call(exchange.client().submit_order, market("err-1"))
    assert failed.value.status_code == status
    assert [o.client_order_id for o in exchange.engine.list_orders(status="all")] == (
        ["err-1"] if kept else []
    )


async def test_one_fault_per_submission_in_a_mix_and_tickds_broker_places_each_order_once(
    exchange: Exchange,
) -> None:
    exchange.price(100.0)
    exchange.chaos.update(
        {
            "submit_fail_every": 2,
            "submit_lost_every": 3,
            "submit_throttle_every": 5,
            "submit_fail_kept_every": 7,
            "submit_timeout_every": 11,
        }
    )
    broker = broker_for(exchange, timeout=0.2, retries=8)
    placed = [await broker.submit(order_request(f"mix-{i}", qty="1")) for i in range(12)]
    venue = exchange.engine.list_orders(status="all", limit=500)
    assert sorted(o.client_order_id for o in venue) == sorted(f"mix-{i}" for i in range(12))
    assert {o.id for o in venue} == {o.id for o in placed}
    injected = exchange.chaos.injected
    assert set(injected) == {
        "submit_fail",
        "submit_lost",
        "submit_throttle",
        "submit_fail_kept",
        "submit_timeout",
    }
    # Each submission met one fault or placed its order; a kept one was found, not sent again.
    kept = injected["submit_fail_kept"] + injected["submit_timeout"]
    assert exchange.engine.stats.submissions == sum(injected.values()) + 12 - kept
    assert exchange.server.stats.errors.get(422, 0) == 0
    assert broker.stats.duplicates_resolved == kept
