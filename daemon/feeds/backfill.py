"""Fill a websocket feed's gap with minute bars from Alpaca's REST history (protocols.md 1.9: the
stream has no replay).

A :class:`BarBackfill` is the feed's ``fill_gap`` hook: the feed awaits it before publishing the
first live message after a gap, so it must be quick and must not fail. It asks for the configured
symbols' 1-minute bars from the minute before the one the gap started in to the gap's end, follows
``next_page_token`` up to ``max_pages`` pages and ``deadline`` seconds, and returns the bars
de-duplicated by (symbol, start) and sorted by (start, symbol). Bars whose minute had not closed
by the gap's end are left out: the stream sends those complete.

REST trouble (refused keys, 429, 5xx, no network, a malformed page) is logged and counted, and what
was fetched before it is returned (Alpaca pages go symbol by symbol, in time order, so each symbol
gets a gapless prefix); only cancellation propagates.

Out of scope here: dropping backfilled bars the stream had delivered already (the minute before
the gap, a bar sent just before the loss). The indicator consumer drops every bar at or before the
last one it saw for that symbol, which covers those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import anyio
import structlog
from msgspec import Struct

from tickd.codecs.alpaca import AlpacaEncoder
from tickd.codecs.alpaca_rest import AssetClass, decode_bars_page
from tickd.codecs.schema import Bar, CryptoBar
from tickd.codecs.timestamps import format_rfc3339_ns

from ..clock import Clock, LiveClock
from .base import FeedGap
from .http import HttpClient, HttpError

__all__ = ["BACKFILL_SUFFIX", "BackfillSettings", "BackfillStats", "BarBackfill"]

#: A gap fill's tape source is its feed's, with this after it (``alpaca.stocks.backfill``).
BACKFILL_SUFFIX: Final = ".backfill"

_log = structlog.get_logger("tickd.feeds")

NS_PER_MINUTE: Final = 60 * 1_000_000_000
_PATHS: Final[dict[str, str]] = {"stocks": "/v2/stocks/bars", "crypto": "/v1beta3/crypto/us/bars"}


class BackfillSettings(Struct, frozen=True, kw_only=True):
    symbols: tuple[str, ...]
    asset: AssetClass = "stocks"
    feed: Literal["iex", "sip"] = "iex"  # stocks only; the free plan's SIP history lags 15 min
    base_url: str = "https://data.alpaca.markets"
    page_limit: int = 10_000  # bars per page (Alpaca's maximum)
    max_pages: int = 20
    deadline: float = 15.0  # seconds for the whole backfill: live data waits behind it
    timeout: float = 10.0  # per request


class BackfillStats(Struct, kw_only=True):
    gaps: int = 0
    requests: int = 0
    bars: int = 0  # returned, after de-duplication
    decode_errors: int = 0
    failures: int = 0  # requests that got no usable answer
    truncated: int = 0  # gaps left unfilled past max_pages or the deadline


class BarBackfill:
    """``await backfill(gap)``: the bars the gap missed (see the module)."""

    def __init__(
        self, settings: BackfillSettings, key_id: str, secret_key: str, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.symbols = settings.symbols  # replace when the feed's bar subscriptions change
        self.stats = BackfillStats()
        self._client = HttpClient(
            {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key},
            timeout=settings.timeout,
        )
        self._url = settings.base_url.rstrip("/") + _PATHS[settings.asset]
        self._clock: Clock = clock or LiveClock()
        # The recorder's tap: what a gap's fill publishes, as one stream frame stamped with the
        # gap's end (the frame that revealed it), under ``<feed>.backfill``; a replay publishes
        # it where the live feed did, before that frame's messages.
        self.tap: Callable[[int, str, bytes], None] | None = None

    async def __call__(self, gap: FeedGap) -> list[Bar | CryptoBar]:
        self.stats.gaps += 1
        if not self.symbols:
            return []
        start = gap.start_ns // NS_PER_MINUTE * NS_PER_MINUTE - NS_PER_MINUTE
        bars: dict[tuple[str, int], Bar | CryptoBar] = {}
        with anyio.move_on_after(self.settings.deadline) as scope:
            complete = await self._fetch(start, gap.end_ns, bars)
        if scope.cancelled_caught or not complete:
            self.stats.truncated += 1
            _log.warning(
                "backfill_truncated",
                source=gap.source,
                bars=len(bars),
                reason="deadline" if scope.cancelled_caught else "max_pages",
            )
        result = sorted(bars.values(), key=lambda bar: (bar.ts_event, bar.symbol))
        self.stats.bars += len(result)
        if self.tap is not None and result:
            frame = AlpacaEncoder(self.settings.asset, "json").encode(result)
            self.tap(gap.end_ns, f"{gap.source}{BACKFILL_SUFFIX}", frame)
        _log.info("backfill_done", source=gap.source, bars=len(result))
        return result

    async def _fetch(
        self, start_ns: int, end_ns: int, bars: dict[tuple[str, int], Bar | CryptoBar]
    ) -> bool:
        """Add the span's complete bars to ``bars``; False when pages were left unfetched."""
        settings = self.settings
        params = {
            "symbols": ",".join(self.symbols),
            "timeframe": "1Min",
            "start": format_rfc3339_ns(start_ns),
            "end": format_rfc3339_ns(end_ns),
            "limit": str(settings.page_limit),
            "sort": "asc",
        }
        if settings.asset == "stocks":
            params["feed"] = settings.feed
        for _ in range(settings.max_pages):
            self.stats.requests += 1
            try:
                body = await self._client.get(self._url, params)
            except HttpError as exc:
                self.stats.failures += 1
                _log.error(
                    "backfill_failed",
                    asset=settings.asset,
                    error=str(exc),
                    status=exc.status,
                    bars=len(bars),
                )
                return True  # a failure (counted above), not a truncation
            page = decode_bars_page(body, settings.asset, self._clock.now_ns())
            for error in page.errors:
                self.stats.decode_errors += 1
                _log.error(
                    "backfill_decode_error",
                    asset=settings.asset,
                    error=error.reason,
                    index=error.index,
                )
            for bar in page.messages:
                if bar.ts_event + NS_PER_MINUTE <= end_ns:  # its minute closed within the gap
                    bars.setdefault((bar.symbol, bar.ts_event), bar)
            if page.next_page_token is None:
                return True
            params["page_token"] = page.next_page_token
        return False
