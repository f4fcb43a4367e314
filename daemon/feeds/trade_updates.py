"""Alpaca order updates (the ``trade_updates`` stream): :class:`TradingSession` and the trading
stream decoder in a :class:`WebsocketFeed`. Paper by default: live keys must be asked for.

Order updates are never conflated or dropped, and the stream has no replay: after a reconnect the
feed reports a :class:`FeedGap` as soon as the stream listens again (not at the next update, which
may come hours later), and the ``fill_gap`` callback, when given, is awaited before any live update
that follows. The broker (a later issue) reconciles the gap from REST,
``GET /v2/orders?status=all&after=<gap start>&direction=asc`` and ``GET /v2/positions``
(protocols.md 2.3), and de-duplicates what it fetched against the live updates. A full raw-frame
queue, or an update that does not decode, drops the connection (``on_loss="reconnect"``), so even
that ends in a gap report and a reconciliation, never in a silently missing fill.

HTTP 429 on the upgrade (one trading stream per account; a stale session holds the slot until the
server reaps it) waits its ``Retry-After``, or ``rate_limited_wait`` (the reap window) without
one, before the next try, and ends the fast retries, as any refusal does. The market-hours silence
watchdog is off, and must stay off: an account with no orders is legitimately silent for hours.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from tickd.codecs.alpaca import Encoding
from tickd.codecs.alpaca_trading import TradingStreamDecoder
from tickd.codecs.trading_session import TradingSession

from ..clock import Clock
from .base import FeedGap
from .websocket import Publish, WebsocketFeed, WebsocketSettings

__all__ = ["TradeUpdatesFeed", "TradeUpdatesSettings"]


class TradeUpdatesSettings(WebsocketSettings, frozen=True, kw_only=True):
    url: str = "wss://paper-api.alpaca.markets/stream"  # live: wss://api.alpaca.markets/stream
    encoding: Encoding = "json"  # the documented default; paper sends it in binary frames
    on_loss: Literal["count", "reconnect"] = "reconnect"

    def __post_init__(self) -> None:
        if self.silence_limit:
            raise ValueError("silence_limit must be 0: order updates are silent for hours")
        if self.on_loss != "reconnect":
            raise ValueError("on_loss must be 'reconnect': an order update is never dropped")


class TradeUpdatesFeed(WebsocketFeed):
    session: TradingSession
    decoder: TradingStreamDecoder

    def __init__(
        self,
        settings: TradeUpdatesSettings,
        key: str,
        secret: str,
        publish: Publish,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        fill_gap: Callable[[FeedGap], Awaitable[list[Any]]] | None = None,
    ) -> None:
        json = settings.encoding == "json"
        super().__init__(
            "alpaca.trade_updates",
            settings,
            TradingSession(key, secret, settings.encoding, settings.step_timeout),
            TradingStreamDecoder(settings.encoding),
            publish,
            headers={"Content-Type": "application/json" if json else "application/msgpack"},
            text_frames=json,
            # A gap ends when the stream listens again: from then on every update comes live,
            # and the broker must reconcile now, not at the next update (maybe hours away).
            gap_at_ready=True,
            fill_gap=fill_gap,
            clock=clock,
            rng=rng,
        )
