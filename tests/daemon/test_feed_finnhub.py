"""The Finnhub feed against a real websocket server on loopback (tests/daemon/finnhub_server.py)."""

from __future__ import annotations

import contextlib
import datetime
import random
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed, InvalidURI

from tickd.codecs.finnhub import FinnhubRequest
from tickd.codecs.schema import Trade
from tickd.daemon.feeds.base import FeedFatalError, FeedGap
from tickd.daemon.feeds.finnhub import FinnhubFeed, FinnhubFeedSettings
from tickd.daemon.market_hours import is_open

from .feed_kit import QuickClock, Sink
from .finnhub_server import TOKEN, Connection, MiniFinnhub

pytestmark = pytest.mark.anyio
SYMBOLS = ("MSFT", "AAPL")
SUBSCRIBED = [FinnhubRequest("subscribe", "AAPL"), FinnhubRequest("subscribe", "MSFT")]
PING = '{"type":"ping"}'


class WallClock(QuickClock):
    """Wall time that starts at a chosen instant (market hours), and runs at the real pace."""

    def __init__(self, start: str) -> None:
        super().__init__()
        self._offset = _ns(start) - super().now_ns()

    def now_ns(self) -> int:
        return super().now_ns() + self._offset


def _ns(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text).timestamp() * 1e9)


def trades(n: int, start: int = 0) -> list[Trade]:
    ms = 1_000_000  # Finnhub carries milliseconds
    return [
        Trade(symbol="AAPL", ts_event=(1_700_000_000_000 + i) * ms, price=1.0 + i, size=i + 1)
        for i in range(start, start + n)
    ]


def make_feed(
    server: MiniFinnhub, sink: Sink, clock: QuickClock, token: str = TOKEN, **settings: Any
) -> FinnhubFeed:
    defaults: dict[str, Any] = {"backoff_initial": 0.01, "backoff_cap": 0.02, "step_timeout": 1.0}
    config = FinnhubFeedSettings(url=server.url, symbols=SYMBOLS, **(defaults | settings))
    return FinnhubFeed(config, token, sink.publish, clock, random.Random(1))


def send_then_close(messages: list[Trade]) -> Any:
    async def behaviour(connection: Connection) -> None:
        await connection.received_at_least(len(SYMBOLS))
        await connection.send_trades(messages)
        await connection.websocket.close()

    return behaviour


def send_then_wait(messages: list[Trade]) -> Any:
    async def behaviour(connection: Connection) -> None:
        await connection.received_at_least(len(SYMBOLS))
        await connection.send_trades(messages)

    return behaviour


async def ping_forever(connection: Connection) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await connection.send_raw(PING)
            await anyio.sleep(0.05)


async def wait_for_connections(server: MiniFinnhub, count: int) -> None:
    with anyio.fail_after(5):
        while server.connections < count:
            await anyio.sleep(0.01)


async def test_the_feed_subscribes_with_the_token_and_publishes_stamped_trades() -> None:
    server = MiniFinnhub([send_then_wait(trades(3))])
    sink, clock = Sink(), QuickClock()
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            feed = make_feed(server, sink, clock)
            await tg.start(feed.run)  # returns once the subscriptions went out
            await sink.wait_for(3)
            tg.cancel_scope.cancel()
    assert server.tokens == [TOKEN]
    assert server.received == SUBSCRIBED  # one message per symbol, sorted
    assert [t.price for t in sink.events] == [1.0, 2.0, 3.0]
    assert all(t.ts_recv > 1_700_000_000_000_000_000 for t in sink.events)
    assert feed.source == "finnhub.trades"
    assert feed.stats.connects == 1 and feed.stats.frames == 1
    assert TOKEN not in repr(logs)


async def test_a_dropped_connection_is_reopened_resubscribed_and_its_gap_reported() -> None:
    server = MiniFinnhub([send_then_close(trades(2)), send_then_wait(trades(1, 2))])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)
        await sink.wait_for(4)
        tg.cancel_scope.cancel()
    first, second, gap, third = sink.events
    assert (first.price, second.price, third.price) == (1.0, 2.0, 3.0)
    assert isinstance(gap, FeedGap) and gap.source == "finnhub.trades"
    assert second.ts_recv <= gap.start_ns < gap.end_ns == third.ts_recv
    assert server.received == SUBSCRIBED * 2
    assert server.tokens == [TOKEN] * 2
    assert server.connections == 2 and feed.stats.gaps == 1


async def test_a_refused_token_stops_the_feed_without_retrying() -> None:
    server = MiniFinnhub()
    sink, clock = Sink(), QuickClock()
    async with server.running():
        feed = make_feed(server, sink, clock, token="wrong")
        with pytest.raises(FeedFatalError, match="HTTP 401") as raised, anyio.fail_after(5):
            await feed.run()
    assert raised.value.code == 401
    assert server.upgrades == 1 and server.connections == 0


async def test_rate_limited_upgrades_are_retried() -> None:
    server = MiniFinnhub([send_then_wait(trades(1))])
    server.http_status = [429, 429]
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        await tg.start(make_feed(server, sink, clock).run)
        await sink.wait_for(1)
        tg.cancel_scope.cancel()
    assert server.upgrades == 3 and server.connections == 1


async def test_too_many_configured_symbols_stop_the_feed() -> None:
    server = MiniFinnhub()
    server.symbol_limit = 1  # AAPL is accepted, MSFT refused
    sink, clock = Sink(), QuickClock()
    async with server.running():
        feed = make_feed(server, sink, clock)
        with pytest.raises(FeedFatalError, match="too many symbols") as raised, anyio.fail_after(5):
            await feed.run()
    assert raised.value.code == 0 and server.connections == 1


async def test_a_refused_runtime_subscription_is_counted_and_the_connection_kept() -> None:
    server = MiniFinnhub()
    server.symbol_limit = 3
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)
        await feed.subscribe(["TSLA", "NVDA"])  # NVDA fits, TSLA does not
        with anyio.fail_after(5):
            while feed.stats.rejected == 0:
                await anyio.sleep(0.01)
        await feed.unsubscribe(["MSFT"])
        with anyio.fail_after(5):
            while len(server.received) < 5:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert server.received[2:] == [
        FinnhubRequest("subscribe", "NVDA"),
        FinnhubRequest("subscribe", "TSLA"),
        FinnhubRequest("unsubscribe", "MSFT"),
    ]
    assert feed.session.wanted["trades"] == {"AAPL", "NVDA"}  # TSLA is not asked for again
    assert server.connections == 1


async def test_an_unknown_error_reconnects_and_resubscribes() -> None:
    async def fail(connection: Connection) -> None:
        await connection.received_at_least(len(SYMBOLS))
        await connection.send_raw('{"type":"error","msg":"Internal server error"}')

    server = MiniFinnhub([fail, send_then_wait(trades(1))])
    sink, clock = Sink(), QuickClock()
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            await tg.start(make_feed(server, sink, clock).run)
            await sink.wait_for(2)
            tg.cancel_scope.cancel()
    gap, trade = sink.events  # the first connection was streaming: what it missed is a gap
    assert isinstance(gap, FeedGap) and trade.price == 1.0
    assert server.connections == 2 and server.received == SUBSCRIBED * 2
    reconnecting = [e for e in logs if e["event"] == "feed_reconnecting"]
    assert reconnecting[0]["reason"] == "error: Internal server error"


async def test_pings_keep_a_quiet_connection_but_are_never_published() -> None:
    server = MiniFinnhub([ping_forever])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock, frame_timeout=0.3)
        await tg.start(feed.run)
        await anyio.sleep(1.0)  # three liveness deadlines, each pushed back by pings
        tg.cancel_scope.cancel()
    assert server.connections == 1 and sink.events == []
    assert feed.stats.frames >= 10


async def test_a_server_that_sends_nothing_at_all_is_given_up() -> None:
    server = MiniFinnhub()  # accepts the subscriptions, then says nothing, not even a ping
    sink, clock = Sink(), QuickClock()
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            tg.start_soon(make_feed(server, sink, clock, frame_timeout=0.2).run)
            await wait_for_connections(server, 2)
            with anyio.fail_after(5):  # the second connection's subscriptions may still be on
                while len(server.received) < 4:  # their way when it is counted
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert server.received[:4] == SUBSCRIBED * 2
    reasons = [e["reason"] for e in logs if e["event"] == "feed_reconnecting"]
    assert reasons[0] == "no frame from the server for 0.2 s"


@pytest.mark.parametrize(
    ("start", "market", "reconnects"),
    [
        ("2024-07-01T10:00:00-04:00", "us_equity", True),  # a Monday morning
        ("2024-07-06T10:00:00-04:00", "us_equity", False),  # a Saturday
        ("2024-07-06T10:00:00-04:00", "crypto", True),
    ],
)
async def test_pings_without_trades_while_the_market_is_open_mean_reconnect(
    start: str, market: Any, reconnects: bool
) -> None:
    assert is_open(market, _ns(start)) is reconnects
    server = MiniFinnhub([ping_forever, ping_forever])
    sink, clock = Sink(), WallClock(start)
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            feed = make_feed(server, sink, clock, silence_limit=0.2, market=market)
            await tg.start(feed.run)
            with anyio.move_on_after(1.0):
                await wait_for_connections(server, 2)
            tg.cancel_scope.cancel()
    assert (server.connections >= 2) is reconnects
    reasons = [e["reason"] for e in logs if e["event"] == "feed_reconnecting"]
    assert all(r.startswith("no data for") for r in reasons) and bool(reasons) is reconnects
    assert sink.events == []  # pings are not data, and no data means no gap to report


def test_a_bad_url_fails_at_once_without_the_token_in_the_error() -> None:
    async def publish(messages: list[Any]) -> None:
        raise AssertionError("nothing to publish")

    with pytest.raises(InvalidURI) as raised:
        FinnhubFeed(FinnhubFeedSettings(url="ws.finnhub.io"), TOKEN, publish)
    assert TOKEN not in str(raised.value)
    settings = FinnhubFeedSettings(url="wss://ws.finnhub.io/?x=1", symbols=("AAPL",))
    feed = FinnhubFeed(settings, "a&b c", publish)
    assert feed._url == "wss://ws.finnhub.io/?x=1&token=a%26b+c"
    assert feed.settings.url == "wss://ws.finnhub.io/?x=1"  # the settings carry no token
