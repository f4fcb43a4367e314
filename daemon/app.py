"""The actor graph, built from the configuration: feeds -> bus -> indicator bank -> strategies ->
risk -> broker, with order updates back through the bus to risk's portfolio and the strategies.

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

from tickd.codecs.schema import (
    Bar,
    ChannelSets,
    CryptoBar,
    CryptoQuote,
    CryptoTrade,
    News,
    OrderUpdate,
    Quote,
    Trade,
)
from tickd.strategies.base import OrderIntent, Strategy
from tickd.strategies.catalog import build
from tickd.strategies.indicators import Bank, Spec

from .actors import Actor, Mailbox, RestartPolicy, Supervisor
from .broker.actor import TRADE_UPDATES, BrokerActor
from .broker.alpaca import AlpacaBroker, AlpacaBrokerSettings
from .broker.base import Broker, OrderRequest
from .broker.ids import load_salt
from .broker.sim import SimBroker, SimSettings
from .bus import Bus
from .clock import Clock, LiveClock
from .config import Config, state_dir
from .control import ControlWatcher
from .feeds.alpaca import AlpacaFeed, AlpacaFeedSettings
from .feeds.backfill import BackfillSettings, BarBackfill
from .feeds.base import FeedGap
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
from .metrics import Metrics
from .portfolio import Portfolio
from .recorder import Recorder
from .risk import RiskActor, RiskEngine
from .strategy_host import StrategyHost
from .trace_export import make_processor, resource_for
from .tracing import Tracing
from .warmup import WarmUp, WarmUpSettings

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


_CONFLATED = frozenset({Quote, CryptoQuote})  # only the latest per symbol matters


def _latest_quote(message: Any) -> tuple[type, str] | None:
    """The strategy host's conflation key: a quote's kind and symbol; None (never conflated)
    for everything else (the bank's batches, bars, news, order updates)."""
    kind = type(message)
    return (kind, message.symbol) if kind in _CONFLATED else None


class App:
    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        indicators: Sequence[Spec] = DEFAULT_INDICATORS,
        feeds: bool = True,
    ) -> None:
        """``feeds=False`` builds the graph for a replay: events enter through :attr:`bus`,
        exactly where the feeds would publish them; no operator switch (a replay's state is its
        own) and restarts without backoff (see :class:`Supervisor`)."""
        self.config = config
        self.live = feeds
        self.clock: Clock = clock or LiveClock()
        self.bus: Bus = Bus()
        runtime = config.runtime
        self.supervisor = Supervisor(
            RestartPolicy(
                # A replay restarts a crashed actor at once: its clock moves only with the tape,
                # so a backoff on it would wait for a tape that waits for the actor.
                backoff=runtime.restart_backoff if feeds else 0.0,
                backoff_max=runtime.restart_backoff_max,
                budget=runtime.restart_budget,
                window=runtime.restart_window,
            ),
            self.clock,
        )
        self.actors: list[Actor[Any]] = []
        self.feeds: list[Feed] = []
        self.control: ControlWatcher | None = None  # the operator's switch, when trading
        self.warmup: WarmUp | None = None  # history for the bank before the feeds connect
        self.broker: Broker | None = None  # when trading
        self.backfills: list[BarBackfill] = []  # the market feeds' gap fills
        self._stop = anyio.Event()
        self.ready = False
        symbols = (*config.symbols.stocks, *config.symbols.crypto)
        # Live, the stamps are always taken (the stage latencies are metrics); spans only while
        # :meth:`run` runs with an exporter configured. Trading, trace ids hash the order-id
        # salt: two state directories (a paper run, another daemon) name their own traces. A
        # replay is not traced: its receive stamps are the tape's, not this process's.
        self.tracing: Tracing | None = None
        if feeds:
            salt = load_salt(state_dir(config)) if config.strategies else ""
            self.tracing = Tracing(config.tracing, salt, resource=resource_for(config.tracing))
        self.strategies: list[Strategy] = [
            build(c.kind, name=c.name or c.kind, symbols=c.symbols or symbols, params=c.params)
            for c in config.strategies
        ]
        wanted = tuple(dict.fromkeys(s for k in self.strategies for s in k.indicators))
        indicators = wanted or indicators
        source = runtime.bank_input
        kinds = (Bar, CryptoBar) if source == "bars" else (Trade, CryptoTrade)
        if symbols and indicators:
            mailbox: Mailbox[Any] = Mailbox("indicators", runtime.mailbox_capacity)
            self.bank = Bank(indicators, len(symbols))
            host: Mailbox[Any] | None = None
            if self.strategies:
                # Quotes wait as the latest per symbol: a strategy busy on a burst of them must
                # not hold up the bank's batches and order updates behind it (which block).
                host = Mailbox("strategies", runtime.mailbox_capacity, "conflate", _latest_quote)
            self.indicators = IndicatorActor(
                mailbox,
                self.bank,
                symbols,
                self.bus.publish_many,
                source,
                deliver=host.send_many if host is not None else None,
                tracing=self.tracing,
            )
            # Every symbol of its kinds: a frame goes to the bank whole, with no routing per
            # event (the actor counts events for symbols it does not keep as ignored).
            for kind in kinds:
                self.bus.subscribe(mailbox, kind)
            self.actors.append(self.indicators)
            if host is not None:
                self._trading(host, symbols, kinds)
        self.feeds = self._feeds() if feeds else []
        for feed in self.feeds:
            feed.tracing = self.tracing
        alpaca = config.alpaca
        # History first: for the strategies, or for a recording (its replay warms up from it).
        if alpaca.warmup_bars and (self.strategies or config.record.enabled):
            settings = WarmUpSettings(
                bars=alpaca.warmup_bars,
                stocks=config.symbols.stocks,
                crypto=config.symbols.crypto,
                feed="sip" if alpaca.feed == "sip" else "iex",
                data_url=alpaca.data_url,
            )
            self.warmup = WarmUp(settings, alpaca.key_id, alpaca.secret_key, self.clock)
        self.recorder: Recorder | None = None
        record = config.record
        if record.enabled and self.feeds:
            self.recorder = Recorder(
                record.directory or state_dir(config) / "tapes",
                compression=record.compression,
                max_bytes=int(record.max_mb * 2**20),
                daily=record.daily,
                flush_interval=record.flush_interval,
                meta={"symbols": ",".join(symbols)},
                clock=self.clock,
            )
            for feed in self.feeds:
                self.recorder.attach(feed)
            for backfill in self.backfills:
                backfill.tap = self.recorder.write
        self.metrics: Metrics | None = None  # while running: the counters and latencies

    def _trading(
        self, host: Mailbox[Any], symbols: tuple[str, ...], bank_kinds: tuple[type, ...]
    ) -> None:
        """The decision half: strategy host -> risk (owns the portfolio) -> broker."""
        config, bus, runtime = self.config, self.bus, self.config.runtime
        directory = state_dir(config)
        self.portfolio = Portfolio()
        self.risk = RiskEngine(
            config.risk,
            self.portfolio,
            symbols,
            config.symbols.crypto,
            self.clock,
            report=directory / "risk.json",
        )
        self.host: StrategyHost = StrategyHost(
            host,
            self.strategies,
            self.bank,
            symbols,
            self.portfolio,
            bus.publish_many,
            paused=lambda: self.risk.reconciling,
            tracing=self.tracing,
        )
        for strategy in self.strategies:
            for kind in strategy.events:
                if kind in bank_kinds:
                    continue  # they come from the indicator actor, after the bank took them
                if kind is OrderUpdate:
                    bus.subscribe(host, kind)
                elif kind is News:  # news names crypto pairs without the slash (BTCUSD)
                    names = {*strategy.symbols, *(s.replace("/", "") for s in strategy.symbols)}
                    bus.subscribe(host, kind, sorted(names))
                else:
                    bus.subscribe(host, kind, strategy.symbols)
        traded: list[str] | None = sorted({s for k in self.strategies for s in k.symbols})
        if set(symbols) <= set(traded or ()):
            traded = None  # every symbol: no routing by symbol (the bus's fast path)
        risk: Mailbox[Any] = Mailbox("risk", runtime.mailbox_capacity)
        for kind in (OrderIntent, OrderUpdate):
            bus.subscribe(risk, kind)
        for kind in bank_kinds:  # marks
            bus.subscribe(risk, kind, traded)
        self.risk_actor = RiskActor(
            risk, self.risk, load_salt(directory), bus.publish_many, self.tracing
        )
        broker_box: Mailbox[Any] = Mailbox("broker", runtime.mailbox_capacity)
        for kind in (OrderRequest, FeedGap):
            bus.subscribe(broker_box, kind)
        self.broker = self._broker()
        if isinstance(self.broker, SimBroker):
            for kind in bank_kinds:  # what it fills against
                bus.subscribe(broker_box, kind, traded)
        self.broker_actor = BrokerActor(
            broker_box, self.broker, self.risk, bus.publish_many, self.clock, tracing=self.tracing
        )
        self.actors += [self.host, self.risk_actor, self.broker_actor]
        if self.live:
            self.control = ControlWatcher(directory, self.risk, self.clock)

    def _broker(self) -> Broker:
        broker = self.config.broker
        if broker.kind == "sim":
            sim = SimSettings(
                fee_per_share=broker.fee_per_share,
                fee_rate=broker.fee_rate,
                slippage_bps=broker.slippage_bps,
            )
            return SimBroker(sim, self.bus.publish_many, self.clock)
        # Paper unless the config says live twice (config.load checks broker.live against
        # alpaca.paper); the trade_updates feed brings the fills.
        alpaca = self.config.alpaca
        settings = AlpacaBrokerSettings(
            paper=alpaca.paper,
            url_override=broker.trading_url or None,
            workers=broker.workers,
            timeout=broker.timeout,
            rate_per_minute=broker.rate_per_minute,
        )
        return AlpacaBroker(alpaca.key_id, alpaca.secret_key, settings, clock=self.clock)

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
        if alpaca.trade_updates or config.broker.kind == "alpaca":
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
        backfill = BarBackfill(settings, alpaca.key_id, alpaca.secret_key, self.clock)
        self.backfills.append(backfill)
        return backfill

    async def warm_up(self, history: Sequence[Bar | CryptoBar]) -> None:
        """Prime the bank and the strategies with history bars (live: fetched before the feeds
        connect; replay: read from the tape)."""
        if self.broker is not None and history:  # trading: decisions on these bars prime
            self.host.trade_after_ns = max(b.ts_event for b in history) + 1  # (never trade)
        if hasattr(self, "indicators"):
            await self.indicators.mailbox.send_many(list(history))
        if self.broker is not None:
            # Risk's first marks: each symbol's newest bar only (the history's drift is no loss
            # of today's, and a reconciled position starts at the newest price).
            newest = {b.symbol: b for b in history}
            await self.risk_actor.mailbox.send_many(list(newest.values()))

    async def drained(self) -> None:
        """Wait until every actor has handled everything sent to it, including what it sent on
        to the next (a lockstep replay feeds the next event only then).

        One look after each turn of the loop is enough: actors pass work only through their
        mailboxes, a message stays counted in the mailbox until its actor takes it, and the
        actor holds it in ``current`` until ``handle`` (which awaits everything it starts,
        sends included) returns; so nothing queued and nothing in hand means nothing pending.
        """
        actors = self.actors
        while any(len(a.mailbox) or a.current for a in actors):
            await anyio.sleep(0)

    async def cancel_open_orders(self) -> int:
        """Cancel every order open at the venue (``broker.on_stop = "cancel"``); the number
        cancelled. A cancel that fails is logged and the others go on: what stays open, the
        next start reconciles."""
        assert self.broker is not None
        cancelled = 0
        try:
            orders = await self.broker.open_orders()
        except Exception as exc:  # the venue cannot say: stop anyway; the next start reconciles
            _log.error("stop_cancel_failed", error=f"{type(exc).__name__}: {exc}")
            return 0
        for order in orders:
            try:
                await self.broker.cancel(order.id)
            except Exception as exc:  # the venue may have filled it meanwhile
                _log.warning("stop_cancel_failed", order_id=order.id, error=str(exc))
            else:
                cancelled += 1
        _log.info("stop_orders_cancelled", cancelled=cancelled)
        return cancelled

    def stop(self) -> None:
        """Begin the ordered shutdown (safe to call from a signal handler task)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called."""
        return self._stop.is_set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every actor, then every feed; report ready; run until :meth:`stop`."""
        if self.tracing is not None:
            self.tracing.processor = make_processor(self.config)
        # Live only: a replay's clock is the tape's, and it prints its own summary.
        self.metrics = metrics = Metrics(self, self.tracing) if self.live else None
        try:
            await self._run(metrics, task_status)
        finally:
            # What the span processor holds goes out, then a last summary: off the event loop
            # (an OTLP export may block), and whatever happens to the first, the second runs.
            with anyio.CancelScope(shield=True):
                try:
                    if self.tracing is not None:
                        await anyio.to_thread.run_sync(self.tracing.shutdown)
                finally:
                    if metrics is not None:
                        await anyio.to_thread.run_sync(metrics.shutdown)

    async def _run(self, metrics: Metrics | None, task_status: TaskStatus[None]) -> None:
        finished = [anyio.Event() for _ in self.actors]
        started = self.clock.now_ns()
        recording = anyio.CancelScope()
        async with anyio.create_task_group() as actors:
            for actor, done in zip(self.actors, finished, strict=True):
                await actors.start(self._supervised, actor, done)
            if self.recorder is not None:
                await actors.start(self._record, recording)
            if self.warmup is not None:
                if self.recorder is not None:
                    self.warmup.tap = self.recorder.write
                await self.warm_up(await self.warmup.fetch())
            async with anyio.create_task_group() as feeds:
                if metrics is not None:
                    feeds.start_soon(metrics.run)
                if self.control is not None:
                    await feeds.start(self.control.run)
                async with anyio.create_task_group() as starting:  # handshakes side by side
                    for feed in self.feeds:
                        starting.start_soon(feeds.start, feed.run)
                if isinstance(self.broker, AlpacaBroker):
                    # Fills between the reconciliation at start and this first connection of
                    # trade_updates came on no stream: ask the venue once more.
                    await self.broker_actor.mailbox.send(
                        FeedGap(source=TRADE_UPDATES, start_ns=started, end_ns=self.clock.now_ns())
                    )
                _log.info("daemon_ready", feeds=[f.source for f in self.feeds])
                self.ready = True
                task_status.started()
                await self._stop.wait()
                _log.info("daemon_stopping")
                feeds.cancel_scope.cancel()
                # No new order from here (a replay's end is not a stop: its orders all go to
                # the simulated venue); approved ones still waiting for the broker are
                # withdrawn, not sent, so the actors drain at once.
                if self.broker is not None:
                    self.risk.stopping = self.live
            if self.broker is not None and self.config.broker.on_stop == "cancel":
                # The actors drain before the venue is asked what is open: none slips past
                # the sweep.
                self.risk.stopping = True
                with anyio.move_on_after(self.config.broker.stop_timeout) as waited:
                    await self.drained()
                    await self.cancel_open_orders()
                if waited.cancelled_caught:
                    _log.error("stop_cancels_timed_out", seconds=self.config.broker.stop_timeout)
            recording.cancel()  # after the feeds: their last frames are on the tape
            # In the order data flows: each actor drains its mailbox and stops before the next
            # one's mailbox closes (it may still publish into it while draining).
            for actor, done in zip(self.actors, finished, strict=True):
                actor.mailbox.close()
                await done.wait()
        _log.info("daemon_stopped")

    async def _record(
        self, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        assert self.recorder is not None
        with scope:
            await self.recorder.run(task_status=task_status)

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
