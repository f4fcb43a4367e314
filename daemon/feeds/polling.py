"""News polled over REST (NewsAPI ``/v2/everything``, Finnhub ``/company-news``), each item
published once, as ``list[News]`` through the same ``publish`` callback as the websocket feeds.

One :class:`NewsPoller` drives a source adapter (:class:`NewsApiSource`, :class:`FinnhubNewsSource`)
that only builds requests and decodes bodies. A round sends the source's requests in turn, spaced by
``request_spacing`` (Finnhub's free plan allows 60 calls a minute); the next round starts
``poll_interval`` later.

De-duplication (:class:`SeenNews`): an item version is ``(provider, id, ts_updated)`` (NewsAPI has
no id: its codec puts the URL in ``id``). Versions are remembered for ``lookback`` seconds, the same
window the requests ask for; anything older than that window is dropped as stale instead, so an
item cannot come back once forgotten. ``max_seen`` caps the memory: past it the oldest versions are
forgotten early and the stale line moves up to them (counted, never a duplicate).

Errors: a 401/403 or a NewsAPI ``apiKeyInvalid``/``apiKeyDisabled``/``apiKeyMissing`` raises
:class:`FeedFatalError` at once (no retry can fix a key); a 429 (or ``rateLimited``,
``apiKeyExhausted``) waits at least ``Retry-After`` (capped by ``max_retry_after``) or
``rate_limit_wait``; server, network and other request errors back off (:class:`Backoff`) and the
next round starts with the request that failed; a malformed body or item is counted, logged and
skipped. Secrets travel in headers and are never logged.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus
from msgspec import Struct

from tickd.codecs.errors import Decoded
from tickd.codecs.finnhub import decode_company_news
from tickd.codecs.newsapi import decode_articles
from tickd.codecs.schema import ApiError, News
from tickd.codecs.timestamps import format_rfc3339_ns

from ..clock import Clock, LiveClock
from ..tracing import Tracing
from .backoff import Backoff
from .base import FeedFatalError
from .http import AuthError, ClientError, HttpClient, HttpError, RateLimitedError
from .websocket import Publish

__all__ = [
    "FinnhubNewsSettings",
    "FinnhubNewsSource",
    "NewsApiSettings",
    "NewsApiSource",
    "NewsPoller",
    "NewsRequest",
    "NewsSource",
    "PollSettings",
    "PollStats",
    "SeenNews",
]

_log = structlog.get_logger("tickd.feeds")

NS_PER_S: Final = 1_000_000_000
# NewsAPI error codes (protocols.md section 7) that say the key is no good, or used up for now.
_FATAL_CODES: Final = frozenset({"apiKeyInvalid", "apiKeyDisabled", "apiKeyMissing"})
_RATE_CODES: Final = frozenset({"rateLimited", "apiKeyExhausted"})
_NEWSAPI_QUERY_CHARS: Final = 500
# NewsAPI's answer to a page past what the plan may see (the free plan: the first 100 results).
_NO_MORE_PAGES: Final = "maximumResultsReached"
# Finnhub's from/to dates have no documented time zone: starting the range this long before the
# newest item seen covers any US one.
_DATE_SLACK_NS: Final = 6 * 3600 * NS_PER_S


class PollSettings(Struct, frozen=True, kw_only=True):
    base_url: str
    poll_interval: float = 60.0  # seconds from the end of one round to the next
    lookback: float = 86_400.0  # seconds of news asked for, remembered and accepted
    max_seen: int = 100_000  # item versions remembered at most
    request_spacing: float = 0.0  # seconds between two requests
    max_pages: int = 3  # pages one request may follow in a round (the rest: ``truncated``)
    timeout: float = 10.0  # per request, in all
    backoff_initial: float = 5.0
    backoff_cap: float = 900.0
    rate_limit_wait: float = 60.0  # after a 429 without Retry-After
    max_retry_after: float = 3600.0


class NewsApiSettings(PollSettings, frozen=True, kw_only=True):
    terms: tuple[str, ...]  # symbols and keywords, OR-ed into ``q``
    base_url: str = "https://newsapi.org/v2"
    poll_interval: float = 900.0  # the free plan allows 100 requests a day
    lookback: float = 2 * 86_400.0  # free-plan articles arrive about a day late
    language: str = "en"  # "" for all
    page_size: int = 100


class FinnhubNewsSettings(PollSettings, frozen=True, kw_only=True):
    symbols: tuple[str, ...]
    base_url: str = "https://finnhub.io/api/v1"
    request_spacing: float = 1.1  # the free plan allows 60 calls a minute


class PollStats(Struct, kw_only=True):
    rounds: int = 0
    requests: int = 0
    published: int = 0
    duplicates: int = 0
    stale: int = 0  # older than the remembered window
    decode_errors: int = 0
    rate_limited: int = 0
    failures: int = 0  # server, network and request errors
    truncated: int = 0  # rounds that stopped paging before reaching news already seen


class NewsRequest(Struct, frozen=True, kw_only=True):
    key: str  # what it asks for ("AAPL"): where a round resumes after a failure
    url: str
    params: dict[str, str]


class NewsSource(Protocol):
    """What a poller needs from a provider: requests to send, and how to read the answers."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> PollSettings: ...

    @property
    def client(self) -> HttpClient: ...

    def requests(self, horizon_ns: int, now_ns: int) -> list[NewsRequest]:
        """This round's requests, for news from ``horizon_ns`` on."""

    def decode(self, body: bytes, ts_recv: int) -> Decoded: ...

    def received(
        self, request: NewsRequest, news: Sequence[News], fresh: int
    ) -> NewsRequest | None:
        """What ``request`` returned (``fresh`` of it new): the follow-up request of this round
        (the next page), if there should be one."""


def _query_term(term: str) -> str:
    return f'"{term}"' if " " in term else term


class NewsApiSource:
    """``GET /v2/everything?q=..&sortBy=publishedAt&from=<the remembered window's start>``.

    Newest first, a page at a time: the next page is asked for while a page is full and all of it
    new (past the first item already seen, the rest is known). Asking from the start of the
    window, not from the newest item seen, keeps articles that NewsAPI indexes late.
    """

    name: Final = "newsapi"

    def __init__(self, settings: NewsApiSettings, key: str) -> None:
        self.settings = settings
        self.client = HttpClient({"X-Api-Key": key}, timeout=settings.timeout)
        self._query = " OR ".join(_query_term(t) for t in settings.terms if t.strip())
        if not self._query or len(self._query) > _NEWSAPI_QUERY_CHARS:
            raise ValueError(
                f"a NewsAPI query needs 1 to {_NEWSAPI_QUERY_CHARS} characters,"
                f" got {len(self._query)} from {len(settings.terms)} terms"
            )
        self._url = settings.base_url.rstrip("/") + "/everything"

    def requests(self, horizon_ns: int, now_ns: int) -> list[NewsRequest]:
        # Whole seconds, rounded up: never before the horizon (older items would be stale).
        since = -(-horizon_ns // NS_PER_S) * NS_PER_S
        params = {
            "q": self._query,
            "sortBy": "publishedAt",
            "from": format_rfc3339_ns(since)[:19],  # UTC, no zone
            "pageSize": str(self.settings.page_size),
            "page": "1",
        }
        if self.settings.language:
            params["language"] = self.settings.language
        return [NewsRequest(key="everything", url=self._url, params=params)]

    def decode(self, body: bytes, ts_recv: int) -> Decoded:
        return decode_articles(body, ts_recv)

    def received(
        self, request: NewsRequest, news: Sequence[News], fresh: int
    ) -> NewsRequest | None:
        if len(news) < self.settings.page_size or fresh < len(news):
            return None
        page = int(request.params["page"]) + 1
        return NewsRequest(
            key=request.key, url=request.url, params=request.params | {"page": str(page)}
        )


class FinnhubNewsSource:
    """``GET /company-news?symbol=..&from=YYYY-MM-DD&to=YYYY-MM-DD``, one request per symbol."""

    name: Final = "finnhub.news"

    def __init__(self, settings: FinnhubNewsSettings, token: str) -> None:
        if not settings.symbols:
            raise ValueError("Finnhub company news needs at least one symbol")
        self.settings = settings
        self.client = HttpClient({"X-Finnhub-Token": token}, timeout=settings.timeout)
        self._url = settings.base_url.rstrip("/") + "/company-news"
        self._newest_ns: dict[str, int] = {}

    def requests(self, horizon_ns: int, now_ns: int) -> list[NewsRequest]:
        to = format_rfc3339_ns(now_ns)[:10]
        requests = []
        for symbol in self.settings.symbols:
            since = max(horizon_ns, self._newest_ns.get(symbol, horizon_ns) - _DATE_SLACK_NS)
            params = {"symbol": symbol, "from": format_rfc3339_ns(since)[:10], "to": to}
            requests.append(NewsRequest(key=symbol, url=self._url, params=params))
        return requests

    def decode(self, body: bytes, ts_recv: int) -> Decoded:
        return decode_company_news(body, ts_recv)

    def received(
        self, request: NewsRequest, news: Sequence[News], fresh: int
    ) -> NewsRequest | None:
        if news:
            newest = max(item.ts_event for item in news)
            self._newest_ns[request.key] = max(newest, self._newest_ns.get(request.key, newest))
        return None  # one answer per symbol and range: no pages


class SeenNews:
    """The item versions published in the last ``lookback_ns``, at most ``capacity`` of them.

    An item older than the window is stale: it was either remembered once and forgotten, or is too
    old to matter; either way it is not published again.
    """

    def __init__(self, lookback_ns: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.lookback_ns = lookback_ns
        self.capacity = capacity
        self._keys: set[tuple[int, str, str]] = set()  # (ts_updated, provider, id)
        self._by_age: list[tuple[int, str, str]] = []  # the same, as a heap: oldest first
        self._forgot_up_to: int | None = None  # newest ts_updated forgotten for room

    def __len__(self) -> int:
        return len(self._keys)

    def horizon_ns(self, now_ns: int) -> int:
        """The oldest ``ts_updated`` still accepted."""
        horizon = now_ns - self.lookback_ns
        if self._forgot_up_to is not None:
            horizon = max(horizon, self._forgot_up_to + 1)
        return horizon

    def admit(self, items: Iterable[News], now_ns: int) -> tuple[list[News], int]:
        """The items not seen before (remembered from now on), and how many were stale."""
        horizon = self.horizon_ns(now_ns)
        keys, by_age = self._keys, self._by_age
        while by_age and by_age[0][0] < horizon:
            keys.discard(heapq.heappop(by_age))
        fresh: list[News] = []
        stale = 0
        for item in items:
            key = (item.ts_updated, item.provider, item.id)
            if item.ts_updated < horizon:
                stale += 1
            elif key not in keys:
                keys.add(key)
                heapq.heappush(by_age, key)
                fresh.append(item)
        while len(keys) > self.capacity:
            oldest = heapq.heappop(by_age)
            keys.discard(oldest)
            self._forgot_up_to = max(oldest[0], self._forgot_up_to or oldest[0])
        return fresh, stale


def _resume_at(requests: list[NewsRequest], key: str | None) -> list[NewsRequest]:
    for index, request in enumerate(requests):
        if request.key == key:
            return requests[index:] + requests[:index]
    return requests


class NewsPoller:
    """Polls one :class:`NewsSource` until cancelled or a fatal error (see the module)."""

    def __init__(
        self,
        source: NewsSource,
        publish: Publish,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = source.settings
        self.news_source = source
        self.source = source.name  # as every feed names itself in logs and the app
        self.stats = PollStats()
        self.seen = SeenNews(round(settings.lookback * NS_PER_S), settings.max_seen)
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_cap, rng)
        self._publish = publish
        self._clock: Clock = clock or LiveClock()
        self._resume: str | None = None  # the request that failed last round
        self._started: Callable[[], None] | None = None  # readiness, until the first answer
        self._last_request_ns: int | None = None
        # The recorder's tap: every response body, raw, with its receive stamp, before decoding.
        self.tap: Callable[[int, str, bytes], None] | None = None
        self.tracing: Tracing | None = None  # stamps each body's receive and decode

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll round after round. ``task_group.start(poller.run)`` returns once the first
        request has been answered, whatever the answer: news is best-effort and must not hold
        up start-up (a round of Finnhub symbols takes a second each), but a refused key raises
        from ``start``."""
        self._started = task_status.started
        while True:
            delay = await self.poll_once()
            await self._clock.sleep(delay)

    def _answered(self) -> None:
        if self._started is not None:
            started, self._started = self._started, None
            started()

    async def poll_once(self) -> float:
        """One round of requests; returns the wait before the next one."""
        self.stats.rounds += 1
        now = self._clock.now_ns()
        requests = self.news_source.requests(self.seen.horizon_ns(now), now)
        for first in _resume_at(requests, self._resume):
            request: NewsRequest | None = first
            fresh: list[News] = []  # of all the pages, published together, oldest first
            pages = 0
            while request is not None:
                if pages == self.news_source.settings.max_pages:
                    self.stats.truncated += 1  # more is new than a round may ask for
                    _log.warning("news_round_truncated", source=self.source, pages=pages)
                    break
                await self._space_out()
                pages += 1
                try:
                    request = await self._fetch(request, fresh)
                    self._answered()
                except HttpError as exc:
                    if pages > 1 and exc.code == _NO_MORE_PAGES:
                        self.stats.truncated += 1  # the plan's result limit
                        break
                    await self._publish_fresh(first, fresh)  # the pages that did come
                    self._resume = first.key
                    return self._failed(exc)
            await self._publish_fresh(first, fresh)
        self._resume = None
        self.backoff.reset()
        return self.news_source.settings.poll_interval

    async def _space_out(self) -> None:
        clock, spacing = self._clock, self.news_source.settings.request_spacing
        if self._last_request_ns is not None and spacing > 0:
            wait = spacing - (clock.monotonic_ns() - self._last_request_ns) / NS_PER_S
            if wait > 0:
                await clock.sleep(wait)
        self._last_request_ns = clock.monotonic_ns()

    async def _fetch(self, request: NewsRequest, fresh_so_far: list[News]) -> NewsRequest | None:
        """Ask, add what is new to ``fresh_so_far``; the follow-up request (the next page)."""
        source, stats = self.news_source, self.stats
        stats.requests += 1
        body = await source.client.get(request.url, request.params)
        ts_recv = self._clock.now_ns()
        if self.tap is not None:
            self.tap(ts_recv, self.source, body)
        started = time.time_ns()
        decoded = source.decode(body, ts_recv)
        if self.tracing is not None:
            self.tracing.decoded(self.source, [ts_recv], started, time.time_ns())
        for error in decoded.errors:
            stats.decode_errors += 1
            _log.error(
                "news_decode_error",
                source=source.name,
                request=request.key,
                error=error.reason,
                index=error.index,
            )
        news: list[News] = []
        for message in decoded.messages:
            if isinstance(message, ApiError):  # an error body with a 2xx status
                raise _api_error(message, request)
            news.append(message)
        fresh, stale = self.seen.admit(news, ts_recv)
        stats.stale += stale
        stats.duplicates += len(news) - len(fresh) - stale
        fresh_so_far += fresh
        return source.received(request, news, len(fresh))

    async def _publish_fresh(self, request: NewsRequest, fresh: list[News]) -> None:
        if fresh:
            fresh.sort(key=lambda item: item.ts_event)
            self.stats.published += len(fresh)
            _log.debug("news_published", source=self.source, request=request.key, n=len(fresh))
            await self._publish(fresh)

    def _failed(self, exc: HttpError) -> float:
        settings, name = self.news_source.settings, self.news_source.name
        if isinstance(exc, AuthError) or exc.code in _FATAL_CODES:
            _log.error("news_poll_fatal", source=name, error=str(exc))
            raise FeedFatalError(name, str(exc), exc.status) from None
        if isinstance(exc, RateLimitedError) or exc.code in _RATE_CODES:
            self.stats.rate_limited += 1
            wait = settings.rate_limit_wait if exc.retry_after is None else exc.retry_after
            delay = self.backoff.next_delay(min(wait, settings.max_retry_after))
            _log.warning("news_rate_limited", source=name, error=str(exc), retry_in=delay)
            self._answered()
            return delay
        self.stats.failures += 1
        self._answered()  # a server error or no server: best-effort news does not hold start-up
        delay = self.backoff.next_delay(settings.request_spacing)
        _log.warning("news_poll_failed", source=name, error=str(exc), retry_in=delay)
        return delay


def _api_error(error: ApiError, request: NewsRequest) -> HttpError:
    cls = (
        AuthError
        if error.code in _FATAL_CODES
        else RateLimitedError
        if error.code in _RATE_CODES
        else ClientError
    )
    return cls(request.url, 200, "error body", code=error.code, message=error.message)
