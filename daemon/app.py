"""The actor graph, built from the configuration: feeds -> bus -> indicator bank -> strategies.

Start-up is a readiness handshake: the actors start (the indicator actor's bank is compiled when it
is built, before anything connects), then each feed connects, authenticates and has its
subscription acknowledged; only then does :meth:`App.run` report ready. Shutdown is ordered: the
feeds stop first, then each actor's mailbox is closed and drained, in the order data flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import anyio
import structlog
from anyio.abc import TaskStatus

from tickd.codecs.schema import Bar, ChannelSets, CryptoBar, CryptoTrade, Trade
from tickd.strategies.indicators import Bank, Spec

from .actors import Actor, Mailbox, RestartPolicy, Supervisor
from .bus import Bus
from .clock import Clock, LiveClock
from .config import Config
from .feeds.alpaca import AlpacaFeed, AlpacaFeedSettings
from .feeds.backfill import BackfillSettings, BarBackfill
from .feeds.finnhub import FinnhubFeed, FinnhubFeedSettings
from .feeds.polling import (
    FinnhubNewsSettings,
    FinnhubNewsSource,
    NewsApiSettings,
    NewsApiSource,
    NewsPoller,
)
from .feeds.trade_updates import TradeUpdatesFeed, TradeUpdatesSettings
from .feeds.websocket import WebsocketFeed
from .indicators import IndicatorActor

__all__ = ["DEFAULT_INDICATORS", "App"]

_log = structlog.get_logger("tickd.app")

Feed: TypeAlias = WebsocketFeed | NewsPoller  # anything with ``run(task_status=)`` and ``source``

# Until strategies declare what they need (the strategies issue), the bank keeps these.
DEFAULT_INDICATORS: tuple[Spec, ...] = (
    Spec("ema", {"timeperiod": 12}),
    Spec("ema", {"timeperiod": 26}),
    Spec("rsi", {"timeperiod": 14}),
    Spec("atr", {"timeperiod": 14}),
)


class App:
    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        indicators: Sequence[Spec] = DEFAULT_INDICATORS,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or LiveClock()
        self.bus = Bus()
        runtime = config.runtime
        self.supervisor = Supervisor(
            RestartPolicy(
                backoff=runtime.restart_backoff,
                backoff_max=runtime.restart_backoff_max,
                budget=runtime.restart_budget,
                window=runtime.restart_window,
            ),
            self.clock,
        )
        self.actors: list[Actor[Any]] = []
        self.feeds: list[Feed] = []
        self._stop = anyio.Event()
        self.ready = False
        symbols = (*config.symbols.stocks, *config.symbols.crypto)
        if symbols and indicators:
            mailbox: Mailbox[Any] = Mailbox("indicators", runtime.mailbox_capacity)
            source: Literal["trades", "bars"] = "bars"
            self.indicators = IndicatorActor(
                mailbox, Bank(indicators, len(symbols)), symbols, self.bus.publish_many, source
            )
            # Every symbol of its kinds: a frame goes to the bank whole, with no routing per
            # event (the actor counts events for symbols it does not keep as ignored).
            for kind in (Bar, CryptoBar) if source == "bars" else (Trade, CryptoTrade):
                self.bus.subscribe(mailbox, kind)
            self.actors.append(self.indicators)
        self.feeds = self._feeds()

    def _feeds(self) -> list[Feed]:
        config, alpaca, symbols = self.config, self.config.alpaca, self.config.symbols
        runtime, publish, clock = config.runtime, self.bus.publish_many, self.clock
        backoff: dict[str, Any] = {
            "backoff_initial": runtime.reconnect_initial,
            "backoff_cap": runtime.reconnect_cap,
        }
        base = alpaca.stream_url.rstrip("/")
        keys = (alpaca.key_id, alpaca.secret_key)
        feeds: list[Feed] = []
        markets: list[tuple[Literal["stocks", "crypto"], tuple[str, ...], tuple[str, ...]]] = [
            ("stocks", symbols.stocks, alpaca.stock_channels),
            ("crypto", symbols.crypto, alpaca.crypto_channels),
        ]
        for asset, wanted, channels in markets:
            if not wanted:
                continue
            settings = AlpacaFeedSettings(
                url=f"{base}/v2/{alpaca.feed}"
                if asset == "stocks"
                else f"{base}/v1beta3/crypto/us",
                stream=asset,
                encoding=alpaca.encoding,
                channels=ChannelSets(**{c: wanted for c in channels}),
                silence_limit=alpaca.silence_limit,
                market="us_equity" if asset == "stocks" else "crypto",
                **backoff,
            )
            feeds.append(
                AlpacaFeed(settings, *keys, publish, clock, fill_gap=self._backfill(asset))
            )
        if alpaca.news:
            settings = AlpacaFeedSettings(
                url=f"{base}/v1beta1/news",
                stream="news",
                encoding=alpaca.encoding,
                channels=ChannelSets(news=symbols.stocks or ("*",)),
                **backoff,
            )
            feeds.append(AlpacaFeed(settings, *keys, publish, clock))
        if alpaca.trade_updates:
            live = "wss://api.alpaca.markets/stream"
            paper = "wss://paper-api.alpaca.markets/stream"
            url = alpaca.trading_stream_url or (paper if alpaca.paper else live)
            # JSON, whatever the market data uses: its documented form (and alpaca-py's).
            trading = TradeUpdatesSettings(url=url, **backoff)
            feeds.append(TradeUpdatesFeed(trading, *keys, publish, clock))
        finnhub = config.finnhub
        if finnhub.enabled:
            if finnhub.trades:
                stream = FinnhubFeedSettings(
                    url=finnhub.stream_url,
                    symbols=finnhub.symbols or symbols.stocks,
                    **backoff,
                )
                feeds.append(FinnhubFeed(stream, finnhub.token, publish, clock))
            if finnhub.company_news and symbols.stocks:
                news = FinnhubNewsSettings(
                    symbols=symbols.stocks,
                    base_url=finnhub.rest_url,
                    poll_interval=finnhub.poll_interval,
                )
                source = FinnhubNewsSource(news, finnhub.token)
                feeds.append(NewsPoller(source, publish, clock=clock))
        newsapi = config.newsapi
        if newsapi.enabled:
            search = NewsApiSettings(
                terms=newsapi.terms or symbols.stocks,
                base_url=newsapi.url,
                poll_interval=newsapi.poll_interval,
            )
            feeds.append(NewsPoller(NewsApiSource(search, newsapi.key), publish, clock=clock))
        return feeds

    def _backfill(self, asset: Literal["stocks", "crypto"]) -> BarBackfill | None:
        """The REST fill for a market feed's gaps, when it subscribes bars and the gap's times
        are the bars' times: not for ``test`` (no history) nor ``delayed_sip`` (its bars arrive
        15 minutes after their time, so a gap's receive times name the wrong bars)."""
        alpaca = self.config.alpaca
        wanted = self.config.symbols.stocks if asset == "stocks" else self.config.symbols.crypto
        channels = alpaca.stock_channels if asset == "stocks" else alpaca.crypto_channels
        if not alpaca.backfill or "bars" not in channels or alpaca.feed in ("test", "delayed_sip"):
            return None
        settings = BackfillSettings(
            symbols=wanted,
            asset=asset,
            feed="sip" if alpaca.feed == "sip" else "iex",
            base_url=alpaca.data_url,
        )
        return BarBackfill(settings, alpaca.key_id, alpaca.secret_key, self.clock)

    def stop(self) -> None:
        """Begin the ordered shutdown (safe to call from a signal handler task)."""
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every actor, then every feed; report ready; run until :meth:`stop`."""
        finished = [anyio.Event() for _ in self.actors]
        async with anyio.create_task_group() as actors:
            for actor, done in zip(self.actors, finished, strict=True):
                await actors.start(self._supervised, actor, done)
            async with anyio.create_task_group() as feeds:
                async with anyio.create_task_group() as starting:  # handshakes side by side
                    for feed in self.feeds:
                        starting.start_soon(feeds.start, feed.run)
                _log.info("daemon_ready", feeds=[f.source for f in self.feeds])
                self.ready = True
                task_status.started()
                await self._stop.wait()
                _log.info("daemon_stopping")
                feeds.cancel_scope.cancel()
            # In the order data flows: each actor drains its mailbox and stops before the next
            # one's mailbox closes (it may still publish into it while draining).
            for actor, done in zip(self.actors, finished, strict=True):
                actor.mailbox.close()
                await done.wait()
        _log.info("daemon_stopped")

    async def _supervised(
        self,
        actor: Actor[Any],
        done: anyio.Event,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await self.supervisor.supervise(actor, task_status=task_status)
        finally:
            done.set()
