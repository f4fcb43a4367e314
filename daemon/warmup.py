"""Warm-up from history: the last N minute bars of each symbol from Alpaca's REST history, through
alpaca-py, fed to the indicator bank before the feeds connect, so strategies trade from the first
live bar instead of after N live minutes.

One request per symbol (``sort=desc, limit=N``: Alpaca's limit counts bars across symbols), in
worker threads (alpa-py's calls block) bounded by ``workers``, each with a timeout. The answers
are taken raw and decoded by the same codec as the gap backfill, so a bar's time is exact to the
nanosecond and a malformed bar is a typed, counted error. A symbol whose history cannot be had is
logged and counted; the daemon starts anyway and that symbol warms up live. The strategy host
never trades on these bars (its ``trade_after_ns`` is set just after the newest of them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import anyio
import msgspec
import structlog
from alpaca.common.enums import Sort
from alpaca.data.enums import DataFeed
from alpaca.data.historical.crypto import CryptoHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from msgspec import Struct

from tickd.codecs.alpaca_rest import decode_bars_page
from tickd.codecs.schema import Bar, CryptoBar

from .clock import Clock

__all__ = ["HISTORY_SOURCE", "WarmUp", "WarmUpSettings", "WarmUpStats"]

#: The tape source of warm-up history pages (``.stocks`` or ``.crypto`` after it).
HISTORY_SOURCE = "alpaca.history"

_log = structlog.get_logger("tickd.warmup")


class WarmUpSettings(Struct, frozen=True, kw_only=True):
    bars: int  # per symbol
    stocks: tuple[str, ...] = ()
    crypto: tuple[str, ...] = ()
    feed: Literal["iex", "sip"] = "iex"
    data_url: str = "https://data.alpaca.markets"
    lookback_days: int = 14  # how far back to look for N bars (weekends, holidays)
    workers: int = 4
    timeout: float = 10.0  # per request


class WarmUpStats(Struct, kw_only=True):
    requests: int = 0
    bars: int = 0
    failures: int = 0  # symbols whose history could not be had
    decode_errors: int = 0


class _TimeoutMixin:
    """alpaca-py's per-request hook with a timeout and without its blind 3 s retry loop (the
    same change the broker's client makes: ``requests`` waits forever by default)."""

    _timeout: float

    def _one_request(self, method: str, url: str, opts: dict[str, Any], retry: int) -> Any:
        return super()._one_request(method, url, {**opts, "timeout": self._timeout}, 0)  # type: ignore[misc]


class _Stocks(_TimeoutMixin, StockHistoricalDataClient):
    pass


class _Crypto(_TimeoutMixin, CryptoHistoricalDataClient):
    pass


class WarmUp:
    def __init__(
        self, settings: WarmUpSettings, key_id: str, secret_key: str, clock: Clock
    ) -> None:
        self.settings = settings
        self.stats = WarmUpStats()
        self._clock = clock
        common: dict[str, Any] = {"raw_data": True, "url_override": settings.data_url}
        self._stocks = _Stocks(key_id, secret_key, **common)
        self._crypto = _Crypto(key_id, secret_key, **common)
        for client in (self._stocks, self._crypto):
            client._timeout = settings.timeout
        self._limiter = anyio.CapacityLimiter(settings.workers)
        # The recorder's tap: each symbol's answer (as the page body the codec decodes), so a
        # replay warms up from the same history.
        self.tap: Callable[[int, str, bytes], None] | None = None

    async def fetch(self) -> list[Bar | CryptoBar]:
        """Every symbol's last ``bars`` bars, oldest first across symbols."""
        found: list[Bar | CryptoBar] = []
        async with anyio.create_task_group() as tg:
            for symbol in self.settings.stocks:
                tg.start_soon(self._one, symbol, "stocks", found)
            for symbol in self.settings.crypto:
                tg.start_soon(self._one, symbol, "crypto", found)
        found.sort(key=lambda bar: (bar.ts_event, bar.symbol))
        self.stats.bars = len(found)
        _log.info("warmup_done", bars=len(found), failures=self.stats.failures)
        return found

    async def _one(
        self, symbol: str, asset: Literal["stocks", "crypto"], found: list[Bar | CryptoBar]
    ) -> None:
        settings = self.settings
        now = dt.datetime.fromtimestamp(self._clock.now_ns() / 1e9, tz=dt.UTC)
        window: dict[str, Any] = {
            "symbol_or_symbols": symbol,
            "timeframe": TimeFrame.Minute,
            "start": now - dt.timedelta(days=settings.lookback_days),
            "end": now,
            "limit": settings.bars,
            "sort": Sort.DESC,
        }
        call: Callable[[], Any]
        if asset == "stocks":
            request = StockBarsRequest(feed=DataFeed(settings.feed), **window)
            call = partial(self._stocks.get_stock_bars, request)
        else:
            call = partial(self._crypto.get_crypto_bars, CryptoBarsRequest(**window))
        self.stats.requests += 1
        try:
            raw = await anyio.to_thread.run_sync(call, limiter=self._limiter)
            # The raw answer is Alpaca's page body ({symbol: [bar, ...]}): the codec decodes it.
            body = msgspec.json.encode({"bars": raw, "next_page_token": None})
        except Exception as exc:  # alpaca-py raises many kinds: HTTP, requests, ValueError
            self.stats.failures += 1
            _log.error("warmup_failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
            return
        now_ns = self._clock.now_ns()
        if self.tap is not None:
            self.tap(now_ns, f"{HISTORY_SOURCE}.{asset}", body)
        page = decode_bars_page(body, asset, now_ns)
        for error in page.errors:
            self.stats.decode_errors += 1
            _log.error("warmup_decode_error", symbol=symbol, error=error.reason)
        found.extend(page.messages)
