"""An Alpaca market-data feed (stocks, crypto, options or news): :class:`AlpacaSession` and the
Alpaca decoder in a :class:`WebsocketFeed`. msgpack by default (smaller and faster to decode)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from tickd.codecs.alpaca import AlpacaDecoder, Encoding, Stream
from tickd.codecs.alpaca_session import AlpacaSession
from tickd.codecs.schema import ChannelSets

from ..clock import Clock
from .base import FeedGap
from .websocket import Publish, WebsocketFeed, WebsocketSettings

__all__ = ["AlpacaFeed", "AlpacaFeedSettings"]


class AlpacaFeedSettings(WebsocketSettings, frozen=True, kw_only=True):
    # url: e.g. wss://stream.data.alpaca.markets/v2/iex
    stream: Stream = "stocks"
    encoding: Encoding = "msgpack"
    channels: ChannelSets = ChannelSets()


class AlpacaFeed(WebsocketFeed):
    session: AlpacaSession

    def __init__(
        self,
        settings: AlpacaFeedSettings,
        key: str,
        secret: str,
        publish: Publish,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        fill_gap: Callable[[FeedGap], Awaitable[list[Any]]] | None = None,
    ) -> None:
        json = settings.encoding == "json"
        super().__init__(
            f"alpaca.{settings.stream}",
            settings,
            AlpacaSession(key, secret, settings.channels, settings.encoding, settings.step_timeout),
            AlpacaDecoder(settings.stream, settings.encoding),
            publish,
            headers={"Content-Type": "application/json" if json else "application/msgpack"},
            text_frames=json,
            fill_gap=fill_gap,
            clock=clock,
            rng=rng,
        )

    async def subscribe(self, channels: ChannelSets) -> None:
        """Want these symbols too: sent now when streaming, else with the next handshake."""
        await self.carry_out_now(self.session.subscribe(channels, self._clock.monotonic_ns()))

    async def unsubscribe(self, channels: ChannelSets) -> None:
        await self.carry_out_now(self.session.unsubscribe(channels, self._clock.monotonic_ns()))
