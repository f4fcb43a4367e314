"""News polling (NewsAPI, Finnhub company news) against a real HTTP server on loopback."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import pytest
from structlog.testing import capture_logs

from tickd.codecs.finnhub import encode_company_news
from tickd.codecs.newsapi import encode_articles, encode_error
from tickd.codecs.schema import ApiError, News
from tickd.codecs.timestamps import format_rfc3339_ns
from tickd.daemon.feeds.base import FeedFatalError
from tickd.daemon.feeds.http import (
    ClientError,
    HttpClient,
    RateLimitedError,
    TransportError,
    redact,
)
from tickd.daemon.feeds.polling import (
    FinnhubNewsSettings,
    FinnhubNewsSource,
    NewsApiSettings,
    NewsApiSource,
    NewsPoller,
    SeenNews,
)

from .feed_kit import QuickClock as FeedClock
from .feed_kit import Sink as FeedSink
from .http_server import HttpServer, Received, Reply, free_url

pytestmark = pytest.mark.anyio
S = 1_000_000_000
HOUR = 3600 * S
NOW = time.time_ns() // S * S
KEY = "sekret-newsapi-key-123"
TOKEN = "sekret-finnhub-token-456"


class QuickClock(FeedClock):
    cut = 0.005  # rounds of requests spaced out: keep them quick


class Sink(FeedSink):
    @property
    def ids(self) -> list[str]:
        return [item.id for batch in self.batches for item in batch]


def article(n: int, ts: int) -> News:
    url = f"https://news.example/{n}"
    return News(provider="newsapi", id=url, url=url, ts_event=ts, ts_updated=ts, headline=f"h{n}")


def company_news(n: int, ts: int, *symbols: str) -> News:
    return News(
        provider="finnhub", id=str(n), ts_event=ts, ts_updated=ts, headline=f"h{n}",
        symbols=symbols, url=f"https://fh.example/{n}",
    )  # fmt: skip


def newsapi_poller(server: HttpServer, sink: Sink, clock: QuickClock, **kw: Any) -> NewsPoller:
    settings = NewsApiSettings(
        terms=("AAPL", "Apple Inc"), base_url=server.url + "/v2", backoff_initial=0.01, **kw
    )
    return NewsPoller(NewsApiSource(settings, KEY), sink.publish, clock=clock, rng=random.Random(1))


def finnhub_poller(server: HttpServer, sink: Sink, clock: QuickClock, **kw: Any) -> NewsPoller:
    settings = FinnhubNewsSettings(
        symbols=("AAPL", "MSFT"), base_url=server.url + "/api/v1", backoff_initial=0.01, **kw
    )
    return NewsPoller(
        FinnhubNewsSource(settings, TOKEN), sink.publish, clock=clock, rng=random.Random(1)
    )


async def run_until(poller: NewsPoller, done: Callable[[], bool]) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(poller.run)
        with anyio.fail_after(5):
            while not done():
                await anyio.sleep(0.005)
        tg.cancel_scope.cancel()


def ok(news: list[News]) -> Reply:
    return Reply(body=encode_articles(news))


async def test_newsapi_publishes_each_article_once_oldest_first_asking_from_the_window() -> None:
    a, b, c = article(1, NOW - 3 * HOUR), article(2, NOW - 2 * HOUR), article(3, NOW - HOUR)
    server = HttpServer([ok([b, a]), ok([c, b]), ok([c, b])])  # newest first, as sorted there
    sink, clock = Sink(), QuickClock()
    with server.running():
        poller = newsapi_poller(server, sink, clock)
        delays = [await poller.poll_once() for _ in range(3)]
    assert delays == [900.0] * 3  # the poll interval
    assert sink.ids == [a.id, b.id, c.id]
    assert [len(batch) for batch in sink.batches] == [2, 1]
    assert all(item.ts_recv >= NOW for batch in sink.batches for item in batch)
    stats = poller.stats
    assert (stats.published, stats.duplicates, stats.stale, stats.failures) == (3, 3, 0, 0)
    first = server.received[0]
    assert first.path == "/v2/everything"
    assert first.query | {"from": ""} == {
        "q": 'AAPL OR "Apple Inc"', "sortBy": "publishedAt", "pageSize": "100", "page": "1",
        "language": "en", "from": "",
    }  # fmt: skip
    # Each round asks from the start of the remembered window (late-indexed articles count),
    # never from before it.
    latest = time.time_ns()
    for request in server.received:
        assert request.query["from"] >= format_rfc3339_ns(NOW - 2 * 86_400 * S)[:19]
        assert request.query["from"] <= format_rfc3339_ns(latest - 2 * 86_400 * S + S)[:19]
    assert all(r.headers["x-api-key"] == KEY and KEY not in r.raw_url for r in server.received)


async def test_newsapi_pages_until_it_reaches_news_it_has_seen_within_a_budget() -> None:
    items = [article(n, NOW - n * 60 * S) for n in range(1, 8)]  # newest first
    pages = [ok(items[0:2]), ok(items[2:4]), ok(items[4:6])]  # full pages of 2, all new
    known = ok([article(0, NOW), items[0]])  # one new, one seen: no next page
    new = ok([article(-2, NOW + 2 * S), article(-1, NOW + S)])  # all new: the next page...
    plan_limit = encode_error(
        ApiError(provider="newsapi", code="maximumResultsReached", message="")
    )
    server = HttpServer([*pages, known, new, Reply(426, plan_limit)])  # ...is past the plan's
    sink, clock = Sink(), QuickClock()
    with server.running():
        poller = newsapi_poller(server, sink, clock, page_size=2, max_pages=3)
        await poller.poll_once()  # three full, new pages: the budget ends the round
        assert poller.stats.truncated == 1
        await poller.poll_once()
        delay = await poller.poll_once()
    assert [r.query["page"] for r in server.received] == ["1", "2", "3", "1", "1", "2"]
    newest = [article(n, NOW - n * S).id for n in (0, -1, -2)]
    assert sink.ids == [i.id for i in reversed(items[:6])] + newest
    assert (poller.stats.truncated, poller.stats.failures) == (2, 0)  # the plan's limit: no error
    assert delay == 900.0  # the round ended normally


async def test_finnhub_asks_per_symbol_spaced_out_and_publishes_shared_items_once() -> None:
    n1, n2, n3 = (company_news(i, NOW - (4 - i) * HOUR) for i in (1, 2, 3))
    n2 = company_news(2, n2.ts_event, "AAPL", "MSFT")
    by_symbol = {"AAPL": [n2, n1], "MSFT": [n3, n2]}

    def respond(request: Received) -> Reply:
        return Reply(body=encode_company_news(by_symbol[request.query["symbol"]]))

    server = HttpServer()
    server.respond = respond
    sink, clock = Sink(), QuickClock()
    with server.running():
        poller = finnhub_poller(server, sink, clock)
        await run_until(poller, lambda: poller.stats.rounds == 3)  # two rounds done
    assert sink.ids == ["1", "2", "3"]
    assert poller.stats.published == 3
    today = format_rfc3339_ns(NOW)[:10]
    first, second, third, _ = server.received[:4]
    assert (first.path, first.query["symbol"], second.query["symbol"]) == (
        "/api/v1/company-news", "AAPL", "MSFT"
    )  # fmt: skip
    assert first.query["to"] == today
    assert first.query["from"] == format_rfc3339_ns(NOW - 86_400 * S)[:10]
    # Round two starts 6 h before the newest item seen for the symbol (dates, any US zone).
    assert third.query["from"] == format_rfc3339_ns(n2.ts_event - 6 * HOUR)[:10]
    assert all(r.headers["x-finnhub-token"] == TOKEN and TOKEN not in r.raw_url for r in [first])
    assert clock.waits.count(60.0) == 2  # the poll interval
    assert sum(0.9 < wait <= 1.1 for wait in clock.waits) >= 3  # spacing before each request


async def test_a_429_waits_for_retry_after_then_polls_again() -> None:
    limited = encode_error(ApiError(provider="newsapi", code="rateLimited", message="slow down"))
    a = article(1, NOW - HOUR)
    server = HttpServer([Reply(429, limited, {"Retry-After": "7"}), ok([a])])
    sink, clock = Sink(), QuickClock()
    with server.running():
        poller = newsapi_poller(server, sink, clock)
        await run_until(poller, lambda: bool(sink.batches))
    assert sink.ids == [a.id]
    assert clock.waits[0] == 7.0
    assert (poller.stats.rate_limited, poller.stats.failures) == (1, 0)


async def test_a_429_without_retry_after_waits_and_the_next_round_resumes_where_it_stopped() -> (
    None
):
    calls: list[str] = []

    def respond(request: Received) -> Reply:
        symbol = request.query["symbol"]
        calls.append(symbol)
        if symbol == "MSFT" and calls.count("MSFT") == 1:
            return Reply(429, b'{"error":"API limit reached."}')
        return Reply(body=encode_company_news([company_news(len(calls), NOW - HOUR, symbol)]))

    server = HttpServer()
    server.respond = respond
    sink, clock = Sink(), QuickClock()
    with server.running():
        poller = finnhub_poller(server, sink, clock, rate_limit_wait=30.0)
        await run_until(poller, lambda: len(calls) == 4)
    assert calls == ["AAPL", "MSFT", "MSFT", "AAPL"]
    assert 30.0 in clock.waits and poller.stats.rate_limited == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "apiKeyInvalid"), (401, "apiKeyDisabled"), (200, "apiKeyInvalid"), (403, "")],
)
async def test_a_refused_key_stops_the_poller_without_retrying(status: int, code: str) -> None:
    body = encode_error(ApiError(provider="newsapi", code=code, message="Your API key is bad."))
    server = HttpServer([Reply(status, body)] * 3)
    sink, clock = Sink(), QuickClock()
    with server.running(), capture_logs() as logs:
        poller = newsapi_poller(server, sink, clock)
        with pytest.raises(FeedFatalError) as caught:
            await poller.run()
    assert caught.value.source == "newsapi" and caught.value.code == status
    assert len(server.received) == 1 and sink.batches == []
    assert any(entry["event"] == "news_poll_fatal" for entry in logs)
    assert KEY not in repr(logs) and KEY not in str(caught.value)


async def test_a_malformed_body_is_counted_and_polling_goes_on() -> None:
    a = article(1, NOW - HOUR)
    good = encode_articles([a])
    one_bad = good.replace(b'"articles":[', b'"articles":[{"title":"no url"},')
    server = HttpServer([Reply(body=b"<html>oops</html>"), Reply(body=one_bad)])
    sink, clock = Sink(), QuickClock()
    with server.running(), capture_logs() as logs:
        poller = newsapi_poller(server, sink, clock)
        await run_until(poller, lambda: bool(sink.batches))
    assert sink.ids == [a.id]
    assert (poller.stats.decode_errors, poller.stats.failures) == (2, 0)
    assert [e["event"] for e in logs].count("news_decode_error") == 2


async def test_server_errors_back_off_and_polling_goes_on_without_leaking_the_key() -> None:
    a = article(1, NOW - HOUR)
    server = HttpServer([Reply(500, b'{"status":"error","code":"unexpectedError"}'), Reply(503)])
    server.replies.append(ok([a]))
    sink, clock = Sink(), QuickClock()
    with server.running(), capture_logs() as logs:
        poller = newsapi_poller(server, sink, clock)
        await run_until(poller, lambda: bool(sink.batches))
    assert sink.ids == [a.id]
    assert poller.stats.failures == 2 and poller.backoff.attempts == 0  # reset by the success
    failed = [e for e in logs if e["event"] == "news_poll_failed"]
    assert len(failed) == 2 and "unexpectedError" in failed[0]["error"]
    assert KEY not in repr(logs)


async def test_a_dead_server_is_a_failure_not_a_crash() -> None:
    sink, clock = Sink(), QuickClock()
    settings = NewsApiSettings(terms=("AAPL",), base_url=free_url(), backoff_initial=2.0)
    poller = NewsPoller(NewsApiSource(settings, KEY), sink.publish, clock=clock)
    with capture_logs() as logs:
        delay = await poller.poll_once()
    assert 0 <= delay <= 2.0 and poller.stats.failures == 1
    assert KEY not in repr(logs)


def test_a_newsapi_query_must_fit() -> None:
    with pytest.raises(ValueError, match="query"):
        NewsApiSource(NewsApiSettings(terms=()), KEY)
    with pytest.raises(ValueError, match="query"):
        NewsApiSource(NewsApiSettings(terms=("X" * 501,)), KEY)
    with pytest.raises(ValueError, match="symbol"):
        FinnhubNewsSource(FinnhubNewsSettings(symbols=()), TOKEN)


def test_secrets_stay_out_of_urls_and_reprs() -> None:
    url = "https://finnhub.io/api/v1/company-news?symbol=AAPL&token=abc&apiKey=def"
    assert redact(url) == "https://finnhub.io/api/v1/company-news?symbol=AAPL&token=***&apiKey=***"
    assert TOKEN not in repr(HttpClient({"X-Finnhub-Token": TOKEN}))


# --- the seen window ----------------------------------------------------------------------------


def test_seen_news_forgets_what_left_the_window_and_refuses_it_as_stale() -> None:
    seen = SeenNews(lookback_ns=10 * S, capacity=100)
    item = company_news(1, 100 * S)
    assert seen.admit([item, item], now_ns=105 * S) == ([item], 0)
    assert seen.admit([item], now_ns=109 * S) == ([], 0)  # a duplicate
    fresh, stale = seen.admit([], now_ns=111 * S)
    assert (fresh, stale, len(seen)) == ([], 0, 0)  # forgotten...
    assert seen.admit([item], now_ns=111 * S) == ([], 1)  # ...and refused as stale


def test_seen_news_counts_an_update_as_new() -> None:
    seen = SeenNews(lookback_ns=10 * S, capacity=100)
    first = company_news(1, 100 * S)
    updated = msgspec.structs.replace(first, ts_updated=101 * S)
    assert seen.admit([first], 101 * S)[0] == [first]
    assert seen.admit([updated], 102 * S)[0] == [updated]


def test_seen_news_is_bounded_and_what_it_had_to_forget_never_comes_back() -> None:
    seen = SeenNews(lookback_ns=1000 * S, capacity=2)
    items = [company_news(i, (100 + i) * S) for i in range(3)]
    assert seen.admit(items, now_ns=200 * S) == (items, 0)
    assert len(seen) == 2
    assert seen.horizon_ns(200 * S) == 100 * S + 1  # past the newest forgotten
    assert seen.admit(items, now_ns=200 * S) == ([], 1)  # the oldest is stale, the rest dupes
    newer = company_news(9, 150 * S)
    assert seen.admit([newer], now_ns=200 * S) == ([newer], 0) and len(seen) == 2


# --- the HTTP client ----------------------------------------------------------------------------


async def test_the_client_sorts_out_answers_by_what_the_caller_should_do() -> None:
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = HttpServer(
        [
            Reply(302, b"", {"Location": "http://elsewhere.example/"}),
            Reply(404, b"not json"),
            Reply(429, b"{}", {"Retry-After": soon}),
            Reply(200, b"x" * 101),
        ]
    )
    with server.running():
        client = HttpClient({"X-Api-Key": KEY}, max_bytes=100)
        with pytest.raises(ClientError) as redirect:
            await client.get(server.url + "/a", {"apiKey": KEY})
        with pytest.raises(ClientError) as missing:
            await client.get(server.url + "/b")
        with pytest.raises(RateLimitedError) as limited:
            await client.get(server.url + "/c")
        with pytest.raises(TransportError, match="larger than 100 bytes"):
            await client.get(server.url + "/d")
    assert redirect.value.status == 302 and KEY not in str(redirect.value)
    assert "apiKey=***" in redirect.value.url and len(server.received) == 4  # not followed
    assert (missing.value.status, missing.value.code, missing.value.message) == (404, "", "")
    assert limited.value.retry_after is not None and 25 < limited.value.retry_after <= 30


async def test_the_client_gives_up_at_its_deadline() -> None:
    def slow(request: Received) -> Reply:
        time.sleep(0.3)
        return Reply(body=b"{}")

    server = HttpServer()
    server.respond = slow
    started = time.monotonic()
    # The socket timeout and the overall deadline are the same: either may end it first.
    with server.running(), pytest.raises(TransportError) as caught:
        await HttpClient(timeout=0.05).get(server.url)
    assert caught.value.status == 0 and time.monotonic() - started < 0.25


async def test_start_up_waits_for_the_first_answer_only_not_a_whole_round() -> None:
    gate = anyio.Event()

    def respond(request: Received) -> Reply:
        return Reply(body=encode_company_news([]))

    server = HttpServer()
    server.respond = respond
    sink = Sink()

    class GatedClock(QuickClock):
        async def sleep(self, seconds: float) -> None:
            await gate.wait()  # the spacing before the second symbol's request never ends
            await super().sleep(seconds)

    with server.running():
        poller = finnhub_poller(server, sink, GatedClock())
        async with anyio.create_task_group() as tg:
            with anyio.fail_after(5):
                await tg.start(poller.run)
            assert [r.query["symbol"] for r in server.received] == ["AAPL"]  # MSFT still to go
            tg.cancel_scope.cancel()
