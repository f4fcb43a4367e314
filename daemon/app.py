"""The actor graph, built from the configuration: feeds -> bus -> indicator bank -> strategies.

Start-up is a readiness handshake: the actors start (the indicator actor's bank is compiled when it
is built, before anything connects), then each feed connects, authenticates and has its
subscription acknowledged; only then does :meth:`App.run` report ready. Shutdown is ordered: the
feeds stop first, then each actor's mailbox is closed and drained, in the order data flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

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
from .indicators import IndicatorActor

__all__ = ["DEFAULT_INDICATORS", "App"]

_log = structlog.get_logger("tickd.app")

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
        self.feeds: list[AlpacaFeed] = []
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

    def _feeds(self) -> list[AlpacaFeed]:
        config, alpaca = self.config, self.config.alpaca
        common: dict[str, Any] = {
            "encoding": alpaca.encoding,
            "backoff_initial": config.runtime.reconnect_initial,
            "backoff_cap": config.runtime.reconnect_cap,
        }
        base = alpaca.stream_url.rstrip("/")
        wanted: list[AlpacaFeedSettings] = []
        if config.symbols.stocks:
            channels: dict[str, tuple[str, ...]] = {
                c: config.symbols.stocks for c in alpaca.stock_channels
            }
            wanted.append(
                AlpacaFeedSettings(
                    url=f"{base}/v2/{alpaca.feed}",
                    stream="stocks",
                    channels=ChannelSets(**channels),
                    silence_limit=alpaca.silence_limit,
                    market="us_equity",
                    **common,
                )
            )
        if config.symbols.crypto:
            channels = {c: config.symbols.crypto for c in alpaca.crypto_channels}
            wanted.append(
                AlpacaFeedSettings(
                    url=f"{base}/v1beta3/crypto/us",
                    stream="crypto",
                    channels=ChannelSets(**channels),
                    silence_limit=alpaca.silence_limit,
                    market="crypto",
                    **common,
                )
            )
        if alpaca.news:
            wanted.append(
                AlpacaFeedSettings(
                    url=f"{base}/v1beta1/news",
                    stream="news",
                    channels=ChannelSets(news=config.symbols.stocks or ("*",)),
                    **common,
                )
            )
        return [
            AlpacaFeed(
                settings, alpaca.key_id, alpaca.secret_key, self.bus.publish_many, self.clock
            )
            for settings in wanted
        ]

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
                for feed in self.feeds:
                    await feeds.start(feed.run)
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
