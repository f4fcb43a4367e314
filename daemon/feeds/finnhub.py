"""The Finnhub trades feed (and news, on a Premium plan): :class:`FinnhubSession` and the Finnhub
decoder in a :class:`WebsocketFeed`.

Finnhub allows one connection per API key, so everything wanted from it shares this one socket.
The token goes in the URL's query (the only place the websocket takes it); a refused token fails
the upgrade with HTTP 401, which stops the feed without retrying, and a 429 is retried.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from websockets.uri import parse_uri

from tickd.codecs.finnhub import FinnhubDecoder
from tickd.codecs.finnhub_session import FRAME_TIMEOUT, Channel, FinnhubSession

from ..clock import Clock
from .base import FeedGap
from .websocket import Publish, WebsocketFeed, WebsocketSettings

__all__ = ["FinnhubFeed", "FinnhubFeedSettings"]


class FinnhubFeedSettings(WebsocketSettings, frozen=True, kw_only=True):
    url: str = "wss://ws.finnhub.io"  # without the token: the feed adds it
    symbols: tuple[str, ...] = ()  # trades: AAPL, BINANCE:BTCUSDT, ...
    news: tuple[str, ...] = ()  # Premium plans only
    # No frame at all (data or ping) for this long: reconnect. Finnhub pings an idle connection
    # every 1-2 minutes, and the market may be closed.
    frame_timeout: float = FRAME_TIMEOUT


class FinnhubFeed(WebsocketFeed):
    session: FinnhubSession

    def __init__(
        self,
        settings: FinnhubFeedSettings,
        token: str,
        publish: Publish,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        fill_gap: Callable[[FeedGap], Awaitable[list[Any]]] | None = None,
    ) -> None:
        # A bad URL fails here, in an error without the token (websockets' own names the URI).
        parse_uri(settings.url)
        separator = "&" if "?" in settings.url else "?"
        url = f"{settings.url}{separator}{urlencode({'token': token})}"
        super().__init__(
            "finnhub.trades",
            settings,
            FinnhubSession(settings.symbols, settings.news, settings.frame_timeout),
            FinnhubDecoder(),
            publish,
            text_frames=True,
            url=url,  # the settings keep the URL without the token
            fill_gap=fill_gap,
            clock=clock,
            rng=rng,
        )

    async def subscribe(self, symbols: Iterable[str], channel: Channel = "trades") -> None:
        """Want these symbols too: sent now when connected, else with the next connection."""
        await self.carry_out_now(self.session.subscribe(symbols, channel))

    async def unsubscribe(self, symbols: Iterable[str], channel: Channel = "trades") -> None:
        await self.carry_out_now(self.session.unsubscribe(symbols, channel))
