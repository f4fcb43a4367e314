"""The ``trade_updates`` feed against a real websocket server on loopback
(tests/daemon/trading_server.py)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import anyio
import msgspec
import pytest
from structlog.testing import capture_logs

from tickd.codecs.alpaca_trading import ListenRequest, TradingAuthRequest
from tickd.codecs.schema import Order, OrderUpdate, StreamError
from tickd.daemon.feeds.base import FeedFatalError, FeedGap
from tickd.daemon.feeds.trade_updates import TradeUpdatesFeed, TradeUpdatesSettings

from .feed_kit import QuickClock, Sink
from .trading_server import Connection, MiniTradingStream

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000_000_000_000
HANDSHAKE = [TradingAuthRequest(key="key", secret="secret"), ListenRequest(("trade_updates",))]


def fills(n: int, start: int = 0) -> list[OrderUpdate]:
    return [
        OrderUpdate(
            event="fill",
            order=Order(id=f"order-{i}", client_order_id=f"tickd-{i}", symbol="AAPL"),
            ts_event=T0 + i,
            execution_id=f"exec-{i}",
            price=Decimal(f"100.{i}"),
            qty=Decimal(1),
            position_qty=Decimal(i + 1),
        )
        for i in range(start, start + n)
    ]


def unstamped(events: list[Any]) -> list[Any]:
    return [msgspec.structs.replace(e, ts_recv=0) for e in events]


def make_feed(
    server: MiniTradingStream, sink: Sink, clock: QuickClock, **kw: Any
) -> TradeUpdatesFeed:
    settings: dict[str, Any] = {"backoff_initial": 0.01, "backoff_cap": 0.02, "step_timeout": 1.0}
    secret = kw.pop("secret", "secret")
    config = TradeUpdatesSettings(url=server.url, encoding=server.encoding, **(settings | kw))
    return TradeUpdatesFeed(config, "key", secret, sink.publish, clock, random.Random(1))


def send_then_close(messages: list[Any]) -> Any:
    async def behaviour(connection: Connection) -> None:
        await connection.send(messages)
        await connection.websocket.close()

    return behaviour


def send_then_wait(messages: list[Any]) -> Any:
    async def behaviour(connection: Connection) -> None:
        await connection.send(messages)
        await connection.websocket.wait_closed()

    return behaviour


@pytest.mark.parametrize(
    ("encoding", "text_frames"), [("json", False), ("json", True), ("msgpack", False)]
)
async def test_the_feed_authenticates_listens_and_publishes_stamped_updates(
    encoding: Any, text_frames: bool
) -> None:
    server = MiniTradingStream(encoding, [send_then_wait(fills(3))])
    server.text_frames = text_frames  # False: binary frames even in JSON mode, as paper sends
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)  # returns once the stream listens
        await sink.wait_for(3)
        tg.cancel_scope.cancel()
    assert server.received == HANDSHAKE
    assert unstamped(sink.events) == fills(3)
    assert all(u.ts_recv > T0 for u in sink.events)
    assert feed.source == "alpaca.trade_updates"
    assert feed.stats.connects == 1 and feed.stats.frames == 5  # 2 control frames, 3 updates


async def test_a_reconnect_listens_again_and_reports_the_gap_before_any_new_update() -> None:
    server = MiniTradingStream(behaviours=[send_then_close(fills(2))])
    filled: list[FeedGap] = []
    more = anyio.Event()

    async def later_update(connection: Connection) -> None:
        await more.wait()
        await connection.send(fills(1, 2))
        await connection.websocket.wait_closed()

    async def fill_gap(gap: FeedGap) -> list[Any]:
        filled.append(gap)
        return fills(1, 9)  # what the broker's REST reconciliation would bring

    server.behaviours.append(later_update)
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        config = TradeUpdatesSettings(url=server.url, backoff_initial=0.01, backoff_cap=0.02)
        feed = TradeUpdatesFeed(config, "key", "secret", sink.publish, clock, fill_gap=fill_gap)
        await tg.start(feed.run)
        await sink.wait_for(4)  # the gap comes with the second "listening", no update needed
        more.set()
        await sink.wait_for(5)
        tg.cancel_scope.cancel()
    first, second, gap, backfilled, third = sink.events
    assert unstamped([first, second, backfilled, third]) == fills(2) + fills(1, 9) + fills(1, 2)
    assert isinstance(gap, FeedGap) and gap.source == "alpaca.trade_updates"
    assert filled == [gap]
    assert second.ts_recv <= gap.start_ns < gap.end_ns < third.ts_recv
    assert server.received == HANDSHAKE * 2 and server.connections == 2
    assert feed.stats.gaps == 1 and feed.stats.backfilled == 1


async def test_a_server_error_before_the_close_is_a_reconnect() -> None:
    server = MiniTradingStream(
        behaviours=[
            send_then_wait([StreamError(code=0, msg="internal server error")]),
            send_then_wait(fills(1)),
        ]
    )
    sink, clock = Sink(), QuickClock()
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            await tg.start(make_feed(server, sink, clock).run)
            await sink.wait_for(2)
            tg.cancel_scope.cancel()
    # A gap although no update came: while the stream was down, one may have been sent.
    gap, first = sink.events
    assert isinstance(gap, FeedGap) and unstamped([first]) == fills(1)
    assert server.connections == 2 and server.received == HANDSHAKE * 2
    (reconnect,) = [e for e in logs if e["event"] == "feed_reconnecting"]
    assert reconnect["reason"] == "server error: internal server error"


async def test_bad_keys_stop_the_feed_without_retrying() -> None:
    server = MiniTradingStream()
    sink, clock = Sink(), QuickClock()
    async with server.running():
        feed = make_feed(server, sink, clock, secret="live-secret-on-paper")
        with pytest.raises(FeedFatalError, match="access key verification failed"):
            await feed.run()
    assert server.connections == 1 and feed.backoff.attempts == 0


async def test_an_ack_without_trade_updates_stops_the_feed() -> None:
    server = MiniTradingStream()
    server.ack = ()
    sink, clock = Sink(), QuickClock()
    async with server.running():
        with pytest.raises(FeedFatalError, match="did not grant trade_updates"):
            await make_feed(server, sink, clock).run()
    assert server.connections == 1


async def test_http_429_on_the_upgrade_is_retried_with_backoff() -> None:
    server = MiniTradingStream(behaviours=[send_then_wait(fills(1))])
    server.http_status = [429, 429]  # the account's stale session is not reaped yet
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)
        await sink.wait_for(1)
        tg.cancel_scope.cancel()
    assert server.refused == 2 and server.connections == 1
    assert feed.backoff.attempts == 0  # reset once the update flowed


async def test_an_unanswered_auth_is_given_up_after_the_step_deadline() -> None:
    server = MiniTradingStream()
    server.answer_auth = False
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        tg.start_soon(make_feed(server, sink, clock, step_timeout=0.1).run)
        with anyio.fail_after(5):
            while server.connections < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert server.received[:2] == [HANDSHAKE[0]] * 2  # the auth went out again


async def test_an_update_that_does_not_decode_is_a_gap_to_reconcile_not_a_silent_loss() -> None:
    async def garbage(connection: Connection) -> None:
        await connection.send_raw(b'{"stream":"account_updates","data":{}}')  # unknown: skipped
        await connection.send(fills(1))
        await connection.send_raw(b'{"stream":"trade_updates","data":null}')  # a lost update
        await connection.websocket.wait_closed()

    async def update(connection: Connection) -> None:
        await connection.send(fills(1, 1))
        await connection.websocket.wait_closed()

    server = MiniTradingStream(behaviours=[garbage, update])
    sink, clock = Sink(), QuickClock()
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            feed = make_feed(server, sink, clock)
            await tg.start(feed.run)
            await sink.wait_for(3)
            tg.cancel_scope.cancel()
    first, gap, second = sink.events
    assert unstamped([first, second]) == fills(2)
    assert isinstance(gap, FeedGap) and gap.start_ns >= first.ts_recv
    assert server.connections == 2 and feed.stats.decode_errors == 1
    assert feed.decoder.stats.errors == 1 and feed.decoder.stats.unknown == 1
    assert "feed_decode_error" in [e["event"] for e in logs if e["log_level"] == "error"]


async def test_a_full_raw_queue_is_a_reconnect_and_a_gap_not_a_dropped_update() -> None:
    async def burst(connection: Connection) -> None:
        await connection.send(fills(6))  # six frames for a queue of two
        await connection.websocket.wait_closed()

    async def update(connection: Connection) -> None:
        await connection.send(fills(1, 6))
        await connection.websocket.wait_closed()

    release = anyio.Event()
    events: list[Any] = []

    async def slow_publish(messages: list[Any]) -> None:
        await release.wait()  # the processor lags: the reader fills the queue
        events.extend(messages)

    server = MiniTradingStream(behaviours=[burst, update])
    settings = TradeUpdatesSettings(url="", queue=2, backoff_initial=0.01, backoff_cap=0.02)
    async with server.running(), anyio.create_task_group() as tg:
        settings = msgspec.structs.replace(settings, url=server.url)
        feed = TradeUpdatesFeed(settings, "key", "secret", slow_publish, QuickClock())
        await tg.start(feed.run)
        while not feed.stats.dropped_frames:
            await anyio.sleep(0.01)
        release.set()
        with anyio.fail_after(5):
            while not events or unstamped(events[-1:]) != fills(1, 6):
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert server.connections == 2  # the full queue ended the first connection
    *before, gap, last = events
    assert isinstance(gap, FeedGap) and unstamped([last]) == fills(1, 6)
    # What was queued when the queue filled up was still published, in order, before the gap.
    assert before and unstamped(before) == fills(len(before))
    assert gap.start_ns == before[-1].ts_recv


def test_settings_default_to_paper_json_and_refuse_the_silence_watchdog() -> None:
    settings = TradeUpdatesSettings()
    assert settings.url == "wss://paper-api.alpaca.markets/stream"
    assert (settings.encoding, settings.silence_limit) == ("json", 0.0)
    with pytest.raises(ValueError, match="silent for hours"):
        TradeUpdatesSettings(silence_limit=60.0)
    with pytest.raises(msgspec.ValidationError, match="silent for hours"):
        msgspec.convert({"silence_limit": 60.0}, TradeUpdatesSettings)
