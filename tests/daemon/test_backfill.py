"""Bar backfill from Alpaca's REST history against a real HTTP server on loopback."""

from __future__ import annotations

import random
import time
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from tickd.codecs.alpaca_rest import encode_bars_page
from tickd.codecs.schema import Bar, ChannelSets, CryptoBar, Trade
from tickd.codecs.timestamps import format_rfc3339_ns, parse_rfc3339_ns
from tickd.daemon.feeds.alpaca import AlpacaFeed, AlpacaFeedSettings
from tickd.daemon.feeds.backfill import BackfillSettings, BarBackfill
from tickd.daemon.feeds.base import FeedGap

from .alpaca_server import Connection, MiniAlpaca
from .feed_kit import QuickClock
from .http_server import HttpServer, Received, Reply, free_url

pytestmark = pytest.mark.anyio
MINUTE = 60_000_000_000
T0 = parse_rfc3339_ns("2024-01-03T14:30:00Z")
# Lost at 14:32:30, back at 14:36:10: bars from 14:31 (the minute before) to 14:35 are complete.
GAP = FeedGap(
    source="alpaca.stocks", start_ns=T0 + 2 * MINUTE + 30 * 10**9, end_ns=T0 + 370 * 10**9
)
KEY_ID, SECRET = "AKTESTKEYID", "sekret-alpaca-secret"


def bar(symbol: str, minute: int, close: float = 1.0, cls: type[Bar | CryptoBar] = Bar) -> Any:
    return cls(
        symbol=symbol, ts_event=T0 + minute * MINUTE, open=1.0, high=2.0, low=0.5, close=close,
        volume=10, trade_count=3, vwap=1.1,
    )  # fmt: skip


def backfill(url: str, **settings: Any) -> BarBackfill:
    config = BackfillSettings(symbols=("AAPL", "MSFT"), base_url=url, **settings)
    return BarBackfill(config, KEY_ID, SECRET)


async def test_a_gap_is_filled_with_complete_unique_bars_in_time_order_across_pages() -> None:
    page1 = [bar("AAPL", m) for m in range(1, 6)]
    page2 = [bar("AAPL", 5, close=9.0)] + [bar("MSFT", m) for m in range(1, 7)]
    server = HttpServer(
        [Reply(body=encode_bars_page(page1, "p2")), Reply(body=encode_bars_page(page2))]
    )
    with server.running():
        fill = backfill(server.url)
        bars = await fill(GAP)
    assert [(b.ts_event, b.symbol) for b in bars] == [
        (T0 + m * MINUTE, s) for m in range(1, 6) for s in ("AAPL", "MSFT")
    ]  # MSFT 14:36 had not closed by the gap's end; AAPL 14:35 came twice
    assert all(type(b) is Bar and b.ts_recv > 0 for b in bars)
    assert bars[8].close == 1.0  # the first copy of AAPL 14:35 is kept
    first, second = server.received
    assert first.path == "/v2/stocks/bars"
    assert first.query == {
        "symbols": "AAPL,MSFT", "timeframe": "1Min", "start": "2024-01-03T14:31:00Z",
        "end": "2024-01-03T14:36:10Z", "limit": "10000", "sort": "asc", "feed": "iex",
    }  # fmt: skip
    assert second.query == first.query | {"page_token": "p2"}
    assert first.headers["apca-api-key-id"] == KEY_ID
    assert first.headers["apca-api-secret-key"] == SECRET
    stats = fill.stats
    assert (stats.gaps, stats.requests, stats.bars, stats.failures, stats.truncated) == (
        1, 2, 10, 0, 0
    )  # fmt: skip


async def test_crypto_bars_come_from_the_crypto_endpoint_without_a_feed() -> None:
    page = [bar("BTC/USD", 2, cls=CryptoBar), bar("ETH/USD", 1, cls=CryptoBar)]
    server = HttpServer([Reply(body=encode_bars_page(page))])
    with server.running():
        config = BackfillSettings(
            symbols=("BTC/USD", "ETH/USD"), asset="crypto", base_url=server.url
        )
        bars = await BarBackfill(config, KEY_ID, SECRET)(GAP)
    assert [(type(b), b.symbol) for b in bars] == [(CryptoBar, "ETH/USD"), (CryptoBar, "BTC/USD")]
    (request,) = server.received
    assert request.path == "/v1beta3/crypto/us/bars" and "feed" not in request.query
    assert request.query["symbols"] == "BTC/USD,ETH/USD"


async def test_a_dead_server_gives_no_bars_and_a_counted_failure_without_the_keys_in_logs() -> None:
    fill = backfill(free_url())
    with capture_logs() as logs:
        assert await fill(GAP) == []
    assert (fill.stats.failures, fill.stats.bars) == (1, 0)
    assert [e["event"] for e in logs] == ["backfill_failed", "backfill_done"]
    assert SECRET not in repr(logs) and KEY_ID not in repr(logs)


@pytest.mark.parametrize("status", [403, 429, 500])
async def test_an_error_midway_returns_what_came_before_it(status: int) -> None:
    page1 = [bar("AAPL", m) for m in (1, 2)]
    refused = b'{"code":40310000,"message":"request is not authorized"}'
    server = HttpServer([Reply(body=encode_bars_page(page1, "p2")), Reply(status, refused)])
    with server.running(), capture_logs() as logs:
        fill = backfill(server.url)
        bars = await fill(GAP)
    assert bars == sorted(bars, key=lambda b: b.ts_event) and len(bars) == 2
    assert (fill.stats.requests, fill.stats.failures) == (2, 1)  # no retry: live data waits
    (failed,) = [e for e in logs if e["event"] == "backfill_failed"]
    assert failed["status"] == status and "40310000" in failed["error"]


async def test_a_malformed_page_is_counted() -> None:
    server = HttpServer([Reply(body=b"<html>bad gateway</html>")])
    with server.running():
        fill = backfill(server.url)
        assert await fill(GAP) == []
    assert (fill.stats.decode_errors, fill.stats.failures) == (1, 0)


async def test_pages_are_capped() -> None:
    def respond(request: Received) -> Reply:
        minute = 1 + len(request.query.get("page_token", ""))
        return Reply(body=encode_bars_page([bar("AAPL", minute)], "x" * minute))

    server = HttpServer()
    server.respond = respond
    with server.running():
        fill = backfill(server.url, max_pages=3)
        bars = await fill(GAP)
    assert [b.ts_event for b in bars] == [T0 + m * MINUTE for m in (1, 2, 3)]
    assert (fill.stats.requests, fill.stats.truncated) == (3, 1)


async def test_the_whole_backfill_has_a_deadline() -> None:
    def slow(request: Received) -> Reply:
        time.sleep(0.3)
        return Reply(body=encode_bars_page([bar("AAPL", 1)]))

    server = HttpServer()
    server.respond = slow
    with server.running():
        fill = backfill(server.url, deadline=0.05)
        started = time.monotonic()
        assert await fill(GAP) == []
        assert time.monotonic() - started < 0.25
    assert fill.stats.truncated == 1


async def test_no_symbols_no_request() -> None:
    fill = backfill(free_url())
    fill.symbols = ()
    assert await fill(GAP) == []
    assert fill.stats.requests == 0


# --- as a websocket feed's fill_gap -------------------------------------------------------------


def trade(n: int) -> Trade:
    return Trade(symbol="AAPL", ts_event=time.time_ns(), price=float(n), size=1)


async def test_the_feed_publishes_the_backfilled_bars_between_the_gap_and_live_data() -> None:
    def respond(request: Received) -> Reply:  # one bar at the start of the asked span
        start = parse_rfc3339_ns(request.query["start"])
        return Reply(body=encode_bars_page([Bar(
            symbol="AAPL", ts_event=start, open=1, high=1, low=1, close=1, volume=1
        )]))  # fmt: skip

    async def send_then_close(connection: Connection) -> None:
        await connection.send([trade(1)])
        await connection.websocket.close()

    async def send_then_wait(connection: Connection) -> None:
        await connection.send([trade(2)])
        await connection.websocket.wait_closed()

    events: list[Any] = []

    async def publish(messages: list[Any]) -> None:
        events.extend(messages)

    rest = HttpServer()
    rest.respond = respond
    stream = MiniAlpaca("json", [send_then_close, send_then_wait])
    with rest.running():
        async with stream.running(), anyio.create_task_group() as tg:
            settings = AlpacaFeedSettings(
                url=stream.url,
                encoding="json",
                channels=ChannelSets(trades=("AAPL",)),
                backoff_initial=0.01,
                backoff_cap=0.02,
            )
            fill = BarBackfill(BackfillSettings(symbols=("AAPL",), base_url=rest.url), "key", "s")
            feed = AlpacaFeed(
                settings, "key", "secret", publish, QuickClock(), random.Random(1), fill_gap=fill
            )
            await tg.start(feed.run)
            with anyio.fail_after(5):
                while len(events) < 4:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    first, gap, backfilled, live = events
    assert isinstance(gap, FeedGap) and isinstance(backfilled, Bar)
    assert (first.price, live.price) == (1.0, 2.0)
    assert backfilled.ts_event == gap.start_ns // MINUTE * MINUTE - MINUTE
    assert format_rfc3339_ns(gap.end_ns) == rest.received[0].query["end"]
    assert feed.stats.backfilled == 1
