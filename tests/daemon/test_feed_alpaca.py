"""The Alpaca feed against a real websocket server on loopback (tests/daemon/alpaca_server.py)."""

from __future__ import annotations

import datetime
import random
import time
from typing import Any

import anyio
import anyio.abc
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tickd.codecs.alpaca import AuthRequest, SubscribeRequest
from tickd.codecs.alpaca_session import REAP_WINDOW
from tickd.codecs.schema import ChannelSets, StreamError, Subscription, Trade
from tickd.daemon.feeds.alpaca import AlpacaFeed, AlpacaFeedSettings
from tickd.daemon.feeds.backoff import Backoff
from tickd.daemon.feeds.base import FeedFatalError, FeedGap
from tickd.daemon.market_hours import is_open

from .alpaca_server import Connection, MiniAlpaca
from .feed_kit import QuickClock, Sink

pytestmark = pytest.mark.anyio
CHANNELS = ChannelSets(trades=("AAPL",), quotes=("MSFT",))


def trades(n: int, start: int = 0) -> list[Trade]:
    return [
        Trade(symbol="AAPL", ts_event=1_700_000_000_000_000_000 + i, price=1.0 + i, size=i + 1)
        for i in range(start, start + n)
    ]


def make_feed(server: MiniAlpaca, sink: Sink, clock: QuickClock, **settings: Any) -> AlpacaFeed:
    defaults: dict[str, Any] = {"backoff_initial": 0.01, "backoff_cap": 0.02, "step_timeout": 1.0}
    config = AlpacaFeedSettings(
        url=server.url, encoding=server.encoding, channels=CHANNELS, **(defaults | settings)
    )
    return AlpacaFeed(config, "key", "secret", sink.publish, clock, random.Random(1))


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


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
async def test_the_feed_authenticates_subscribes_and_publishes_stamped_data(encoding: Any) -> None:
    server = MiniAlpaca(encoding, [send_then_wait(trades(3))])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)  # returns once the subscription is acknowledged
        await sink.wait_for(3)
        tg.cancel_scope.cancel()
    auth, subscribe = server.received
    assert auth == AuthRequest(key="key", secret="secret")
    assert isinstance(subscribe, SubscribeRequest)
    assert (subscribe.trades, subscribe.quotes) == (("AAPL",), ("MSFT",))
    assert [t.price for t in sink.events] == [1.0, 2.0, 3.0]
    assert all(t.ts_recv > 1_700_000_000_000_000_000 for t in sink.events)
    assert feed.stats.connects == 1 and feed.stats.frames == 4  # 3 control frames, 1 of data


async def test_a_dropped_connection_is_reopened_resubscribed_and_its_gap_reported() -> None:
    server = MiniAlpaca(behaviours=[send_then_close(trades(2)), send_then_wait(trades(1, 2))])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)
        await sink.wait_for(4)
        tg.cancel_scope.cancel()
    first, second, gap, third = sink.events
    assert (first.price, second.price, third.price) == (1.0, 2.0, 3.0)
    assert isinstance(gap, FeedGap) and gap.source == "alpaca.stocks"
    assert second.ts_recv <= gap.start_ns < gap.end_ns == third.ts_recv
    assert [type(m).__name__ for m in server.received] == ["AuthRequest", "SubscribeRequest"] * 2
    assert server.connections == 2 and feed.stats.gaps == 1


async def test_connection_limit_waits_out_the_reap_window() -> None:
    async def limit(connection: Connection) -> None:
        await connection.send([StreamError(code=406, msg="connection limit exceeded")])
        await connection.websocket.wait_closed()

    server = MiniAlpaca(behaviours=[limit, send_then_wait(trades(1))])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        await tg.start(make_feed(server, sink, clock).run)
        await sink.wait_for(1)
        tg.cancel_scope.cancel()
    assert REAP_WINDOW in clock.waits
    assert server.connections == 2


async def test_a_server_that_hangs_up_while_we_answer_is_reconnected() -> None:
    server = MiniAlpaca(behaviours=[send_then_wait(trades(1))])
    server.hang_up_after_greeting = 2  # our auth goes out on a closing socket, twice
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        await tg.start(make_feed(server, sink, clock).run)
        await sink.wait_for(1)
        tg.cancel_scope.cancel()
    assert server.connections == 3


async def test_frames_received_before_a_close_are_all_handled_even_a_fatal_error() -> None:
    async def data_then_fatal(connection: Connection) -> None:
        await connection.send(trades(3))
        await connection.send(trades(2, 3))
        await connection.send([StreamError(code=402, msg="auth failed")])
        await connection.websocket.close()

    release = anyio.Event()
    seen: list[Any] = []

    async def slow_publish(messages: list[Any]) -> None:
        await release.wait()  # the processor lags: the close arrives with frames queued
        seen.extend(messages)

    server = MiniAlpaca(behaviours=[data_then_fatal])
    clock = QuickClock()
    async with server.running():
        config = AlpacaFeedSettings(url=server.url, channels=CHANNELS, backoff_initial=0.01)
        feed = AlpacaFeed(config, "key", "secret", slow_publish, clock)
        with pytest.raises(ExceptionGroup) as raised, anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed.run)
                while feed.session.state.value not in ("streaming", "failed"):
                    await anyio.sleep(0.01)
                await anyio.sleep(0.2)  # everything sent and the socket closed
                release.set()
                await anyio.sleep_forever()  # until the feed stops for good
    (error,) = raised.value.exceptions
    assert isinstance(error, FeedFatalError) and error.code == 402
    assert [t.price for t in seen] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert server.connections == 1


async def test_bad_keys_stop_the_feed_without_retrying() -> None:
    server = MiniAlpaca()
    sink, clock = Sink(), QuickClock()
    async with server.running():
        feed = AlpacaFeed(
            AlpacaFeedSettings(url=server.url, channels=CHANNELS, backoff_initial=0.01),
            "key",
            "wrong",
            sink.publish,
            clock,
        )
        with pytest.raises(FeedFatalError, match="402 auth failed") as raised:
            await feed.run()
    assert raised.value.code == 402 and server.connections == 1


async def test_http_refusals_retry_on_429_and_stop_on_404() -> None:
    server = MiniAlpaca(behaviours=[send_then_wait(trades(1))])
    server.http_status = [429, 429]
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        await tg.start(make_feed(server, sink, clock).run)
        await sink.wait_for(1)
        tg.cancel_scope.cancel()
    assert server.connections == 1  # the two refused upgrades never reached the handler

    server = MiniAlpaca()
    server.http_status = [404]
    async with server.running():
        with pytest.raises(FeedFatalError, match="HTTP 404"):
            await make_feed(server, sink, clock).run()


async def test_a_silent_server_is_given_up_after_the_step_deadline() -> None:
    server = MiniAlpaca()
    server.greet = False  # never says "connected"
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        tg.start_soon(make_feed(server, sink, clock, step_timeout=0.1).run)
        with anyio.fail_after(5):
            while server.connections < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert server.received == []  # nothing to answer: no auth went out


async def test_a_full_frame_queue_drops_frames_and_counts_them() -> None:
    release = anyio.Event()

    async def flood(connection: Connection) -> None:
        for i in range(20):
            await connection.send(trades(1, i))
        await connection.websocket.wait_closed()

    server = MiniAlpaca(behaviours=[flood])
    clock = QuickClock()
    seen: list[Any] = []

    async def slow_publish(messages: list[Any]) -> None:
        await release.wait()
        seen.extend(messages)

    async with server.running(), anyio.create_task_group() as tg:
        config = AlpacaFeedSettings(url=server.url, channels=CHANNELS, queue=2, batch=1)
        feed = AlpacaFeed(config, "key", "secret", slow_publish, clock)
        await tg.start(feed.run)
        with anyio.fail_after(5):
            while feed.stats.dropped_frames + 3 < 20:  # one being handled, two queued
                await anyio.sleep(0.01)
        release.set()
        with anyio.fail_after(5):
            while len(seen) + feed.stats.dropped_frames < 20:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert feed.stats.dropped_frames > 0
    assert len(seen) + feed.stats.dropped_frames == 20  # every frame delivered or counted


async def test_a_cancelled_feed_stops_within_a_second() -> None:
    server = MiniAlpaca(behaviours=[send_then_wait([])])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        await tg.start(make_feed(server, sink, clock).run)
        start = anyio.current_time()
        tg.cancel_scope.cancel()
    assert anyio.current_time() - start < 1.0


async def test_an_unreachable_server_is_retried_with_backoff() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # a port nobody listens on any more
    sink, clock = Sink(), QuickClock()
    server = MiniAlpaca()
    server.url = f"ws://127.0.0.1:{port}/v2/test"
    feed = make_feed(server, sink, clock)
    with anyio.move_on_after(0.5):
        await feed.run()
    assert feed.stats.connects == 0 and feed.backoff.attempts >= 3


async def test_bad_frames_are_logged_and_the_good_ones_still_flow() -> None:
    async def garbage_then_data(connection: Connection) -> None:
        await connection.send_raw(b"\xc1 not a frame")
        await connection.send(trades(1))
        await connection.websocket.wait_closed()

    server = MiniAlpaca(behaviours=[garbage_then_data])
    sink, clock = Sink(), QuickClock()
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            feed = make_feed(server, sink, clock)
            await tg.start(feed.run)
            await sink.wait_for(1)
            tg.cancel_scope.cancel()
    assert [t.price for t in sink.events] == [1.0]
    assert feed.decoder.stats.errors == 1
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["feed_decode_error"]


async def test_subscription_changes_mismatches_and_refusals_are_counted() -> None:
    async def refuse_the_change(connection: Connection) -> None:
        request = await connection.receive()
        assert request.bars == ("SPY",)
        await connection.send([StreamError(code=405, msg="symbol limit exceeded")])
        await connection.websocket.wait_closed()

    server = MiniAlpaca(behaviours=[refuse_the_change])
    server.ack = Subscription(trades=("AAPL",))  # MSFT quotes missing
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)
        assert feed.stats.mismatches == 1
        await feed.subscribe(ChannelSets(bars=("SPY",)))
        with anyio.fail_after(5):
            while feed.stats.rejected == 0:
                await anyio.sleep(0.01)
        await feed.unsubscribe(ChannelSets(bars=("SPY",)))  # streaming again: sent at once
        tg.cancel_scope.cancel()
    # The refused request also asked again for the MSFT quotes the first ack left out: a
    # refused request's symbols leave the wanted set (else each reconnect asks for them again).
    assert feed.session.wanted == {"trades": frozenset({"AAPL"})}


async def test_a_feed_silent_while_its_market_is_open_is_reconnected() -> None:
    server = MiniAlpaca()  # handshakes, then says nothing
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock, silence_limit=0.2, market="crypto")
        await tg.start(feed.run)
        with anyio.fail_after(5):
            while feed.stats.connects < 2:  # the feed gave up on the silent connection
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert server.connections >= 2


def test_us_equities_are_open_in_the_regular_session_only() -> None:
    def ns(text: str) -> int:
        return int(datetime.datetime.fromisoformat(text).timestamp() * 1e9)

    assert is_open("us_equity", ns("2024-07-01T13:30:00+00:00"))  # 09:30 EDT, a Monday
    assert not is_open("us_equity", ns("2024-07-01T13:29:59+00:00"))
    assert not is_open("us_equity", ns("2024-07-01T20:00:00+00:00"))  # 16:00 EDT
    assert is_open("us_equity", ns("2024-01-02T14:30:00+00:00"))  # 09:30 EST
    assert not is_open("us_equity", ns("2024-01-02T14:29:00+00:00"))
    assert not is_open("us_equity", ns("2024-07-06T15:00:00+00:00"))  # a Saturday
    assert is_open("crypto", ns("2024-07-06T15:00:00+00:00"))


def test_backoff_doubles_with_full_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    bounds = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(0 <= d <= b for d, b in zip(delays, bounds, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    assert backoff.next_delay(at_least=90.0) == 90.0
    backoff.reset()
    assert backoff.attempts == 0 and backoff.next_delay() <= 1.0
    with pytest.raises(ValueError, match="initial <= cap"):
        Backoff(5.0, 1.0)


def test_backoff_retries_fast_after_data_flowed_then_doubles_with_jitter() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(3), fast=0.1, fast_attempts=3, fast_after=0)
    assert backoff.next_delay() <= 1.0 and backoff.attempts == 1  # start-up: no fast phase
    backoff.reset()  # data flowed: the next drop is most likely a blip
    fast = [backoff.next_delay() for _ in range(3)]
    assert all(0.05 <= d <= 0.1 for d in fast) and len(set(fast)) == 3
    assert backoff.attempts == 0
    slow = [backoff.next_delay() for _ in range(4)]
    assert all(0 <= d <= b for d, b in zip(slow, [1, 2, 4, 8], strict=True))
    assert max(slow) > 0.1  # the fast phase is over
    backoff.reset()
    assert backoff.next_delay(at_least=90.0) == 90.0  # a 406's reap window still wins
    assert Backoff(0.01, 1.0, fast=0.1, fast_attempts=2).fast == 0.01  # never above initial
    with pytest.raises(ValueError, match="fast"):
        Backoff(1.0, 2.0, fast=-1.0)


async def test_a_gap_fill_that_fails_is_logged_and_the_live_data_goes_on() -> None:
    async def broken_fill(gap: FeedGap) -> list[Any]:
        raise RuntimeError("the history server is down in a way nobody expected")

    server = MiniAlpaca(behaviours=[send_then_close(trades(1)), send_then_wait(trades(1, 1))])
    sink, clock = Sink(), QuickClock()
    with capture_logs() as logs:
        async with server.running(), anyio.create_task_group() as tg:
            settings = AlpacaFeedSettings(
                url=server.url, channels=CHANNELS, backoff_initial=0.01, backoff_cap=0.02
            )
            feed = AlpacaFeed(settings, "key", "secret", sink.publish, clock, fill_gap=broken_fill)
            await tg.start(feed.run)
            await sink.wait_for(3)
            tg.cancel_scope.cancel()
    first, gap, second = sink.events
    assert isinstance(gap, FeedGap) and (first.price, second.price) == (1.0, 2.0)
    assert feed.stats.backfill_failures == 1 and feed.stats.backfilled == 0
    assert "feed_gap_fill_failed" in [e["event"] for e in logs if e["log_level"] == "error"]


def test_backoff_stays_under_its_cap_after_any_number_of_failures() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(3))
    delays = [backoff.next_delay() for _ in range(5000)]  # 2.0**1024 would overflow a float
    assert max(delays) <= 60.0 and max(delays[-100:]) > 30.0


async def test_the_raw_queue_holds_a_byte_budget_and_counts_what_it_drops() -> None:
    async def burst(connection: Connection) -> None:
        for i in range(8):
            await connection.send(trades(1, i))  # 8 frames of about 60 bytes
        await connection.websocket.wait_closed()

    release = anyio.Event()
    seen: list[Any] = []

    async def slow_publish(messages: list[Any]) -> None:
        await release.wait()
        seen.extend(messages)

    server = MiniAlpaca(behaviours=[burst])
    async with server.running(), anyio.create_task_group() as tg:
        settings = AlpacaFeedSettings(url=server.url, channels=CHANNELS, queue_bytes=150)
        feed = AlpacaFeed(settings, "key", "secret", slow_publish, QuickClock())
        await tg.start(feed.run)
        with anyio.fail_after(5):
            while not feed.stats.dropped_frames:
                await anyio.sleep(0.01)
        release.set()
        with anyio.fail_after(5):
            while len(seen) + feed.stats.dropped_frames < 8:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert 0 < len(seen) < 8 and feed.stats.connects == 1  # counted, not a reconnect
    prices = [t.price for t in seen]
    assert prices == sorted(prices)  # what was kept arrived in order


async def test_a_message_sent_in_fragments_is_put_together_in_order() -> None:
    async def fragments(connection: Connection) -> None:
        await connection.send(trades(1))
        whole = connection.server.encoder.encode(trades(2, 1))
        await connection.websocket.send([whole[:7], whole[7:20], whole[20:]])  # 3 frames
        await connection.send(trades(1, 3))
        await connection.websocket.wait_closed()

    server = MiniAlpaca(behaviours=[fragments])
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(server, sink, clock)
        await tg.start(feed.run)
        await sink.wait_for(4)
        tg.cancel_scope.cancel()
    assert [t.price for t in sink.events] == [1.0, 2.0, 3.0, 4.0]
    assert feed.stats.decode_errors == 0


def test_backoff_arms_the_fast_phase_only_once_data_has_flowed_a_while() -> None:
    """A server that sends a message and drops us, over and over, is not retried ten times a
    second for ever: the fast phase needs data flowing for ``fast_after`` seconds."""
    backoff = Backoff(1.0, 8.0, random.Random(5), fast=0.1, fast_attempts=2, fast_after=3600)
    for _ in range(5):  # one message per connection, then the drop
        backoff.reset()
        backoff.next_delay()
        assert backoff.attempts == 1  # an exponential retry, not a fast one
    flowing = Backoff(1.0, 8.0, random.Random(5), fast=0.1, fast_attempts=2, fast_after=0.05)
    flowing.reset()
    flowing.next_delay()
    assert flowing.attempts == 1  # data for less than fast_after: not armed
    flowing.reset()
    time.sleep(0.06)
    flowing.reset()  # data for longer than fast_after: armed
    assert all(0.05 <= flowing.next_delay() <= 0.1 for _ in range(2))
    assert flowing.attempts == 0  # fast retries are not exponential attempts
    flowing.next_delay()
    assert flowing.attempts == 1  # then exponential


class _RefusingAlpaca(MiniAlpaca):
    """Also says ``Retry-After`` on its refusals, when given one."""

    retry_after: str | None = None

    def _refuse(self, connection: ServerConnection, request: Request) -> Response | None:
        response = super()._refuse(connection, request)
        if response is not None and self.retry_after is not None:
            response.headers["Retry-After"] = self.retry_after
        return response


@pytest.mark.parametrize(
    ("refusal", "retry_after", "waits_at_least"),
    [(429, None, 90.0), (429, "7", 7.0), (503, None, 0.0), (406, None, REAP_WINDOW)],
)
async def test_a_refusal_ends_the_fast_phase_and_a_429_waits_for_the_slot(
    refusal: int, retry_after: str | None, waits_at_least: float
) -> None:
    """After a stream that carried data drops, retries are fast, but a server that refuses us
    is up and says wait: no more fast retries (a 429 storm otherwise, alpaca-py #740)."""
    server = _RefusingAlpaca()
    server.retry_after = retry_after

    async def flow_then_drop(connection: Connection) -> None:
        await connection.send(trades(1))
        await anyio.sleep(0.15)  # data flowing longer than fast_after: the fast phase is armed
        await connection.send(trades(1, 1))
        if refusal != 406:
            server.http_status = [refusal]
            server.hang_up_after_greeting = 1  # then one plain failure after the refusal
        await connection.websocket.close()

    async def limit(connection: Connection) -> None:
        server.hang_up_after_greeting = 1
        await connection.send([StreamError(code=406, msg="connection limit exceeded")])
        await connection.websocket.wait_closed()

    server.behaviours = [flow_then_drop, *([limit] if refusal == 406 else [])]
    server.behaviours.append(send_then_wait(trades(1, 2)))
    sink, clock = Sink(), QuickClock()
    async with server.running(), anyio.create_task_group() as tg:
        feed = make_feed(
            server, sink, clock, backoff_initial=1.0, backoff_cap=2.0, backoff_fast=0.1
        )
        feed.backoff.fast_after = 0.1
        calls: list[tuple[float, int]] = []  # (at_least, exponential attempts after the call)
        next_delay = feed.backoff.next_delay

        def spy(at_least: float = 0.0) -> float:
            delay = next_delay(at_least)
            calls.append((at_least, feed.backoff.attempts))
            return delay

        feed.backoff.next_delay = spy  # type: ignore[method-assign]
        await tg.start(feed.run)
        await sink.wait_for(4)  # 3 trades and the gap
        tg.cancel_scope.cancel()
    # The drop: a fast retry. The refusal: its wait, and exponential from then on.
    assert calls == [(0.0, 0), (waits_at_least, 1), (0.0, 2)]
    if waits_at_least:
        assert waits_at_least in clock.waits
