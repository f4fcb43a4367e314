"""Replay: a tape through the same codecs, bus and actors as live, deterministically.

Each record's raw frame is decoded by the codec of the source that sent it (the same decoder
class, JSON or msgpack as the frame shows) and its data messages are published on the bus of an
:class:`App` built without feeds, exactly where a feed publishes them. Protocol messages (the
handshake, subscription acknowledgements, pings) are counted, not published; ``trade_updates``
frames are skipped, since the simulated broker makes the replay's own. Polled news goes through
the same de-duplication as the poller.

Determinism: the app's clock is a :class:`ManualClock` set to each record's receive time, each
record's consequences settle (:meth:`App.drained`) before the next is published, the broker is
:class:`SimBroker` (fills from the tape's own market), the state directory is a fresh temporary
one (no live ``risk.json`` or operator command leaks in) and the order-id salt is fixed. The
same tape and config therefore give the same order intents, byte for byte:
:attr:`ReplaySummary.digest` is a BLAKE2b of them in order. Warm-up history on the tape (the
REST pages the live daemon warmed up from) primes the graph before the first live message, as
it did live. ``speed`` paces the replay (1.0: as recorded, 10.0: ten times faster) on a
separate clock that tests can inject; ``None`` runs at full speed.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import msgspec
import structlog

from tickd.codecs.alpaca import AlpacaDecoder, Stream
from tickd.codecs.alpaca_rest import decode_bars_page
from tickd.codecs.alpaca_trading import TradingStreamDecoder
from tickd.codecs.errors import Decoded
from tickd.codecs.finnhub import FinnhubDecoder, decode_company_news
from tickd.codecs.newsapi import decode_articles
from tickd.codecs.schema import (
    ApiError,
    Authorization,
    Bar,
    CryptoBar,
    CryptoTrade,
    Listening,
    OrderUpdate,
    Ping,
    StreamError,
    Subscription,
    Success,
    Trade,
)
from tickd.codecs.tape import TapeReader, TapeRecord, tape_paths
from tickd.strategies.base import OrderIntent

from .actors import Mailbox
from .app import App
from .broker.sim import SimBroker
from .clock import Clock, LiveClock, ManualClock
from .config import Config
from .feeds.backfill import BACKFILL_SUFFIX
from .feeds.polling import FinnhubNewsSettings, NewsApiSettings, SeenNews
from .indicators import IndicatorSnapshot
from .latency import LatencyHistogram
from .report import ReportData, SymbolSeries
from .report import Trade as ReportTrade
from .warmup import HISTORY_SOURCE

__all__ = [
    "REPLAY_SALT",
    "ReplaySummary",
    "Replayer",
    "TapeDecoders",
    "digest_intents",
    "replay",
]

_log = structlog.get_logger("tickd.replay")

#: The order-id salt of every replay: the same decisions get the same client order ids.
REPLAY_SALT = "tickd-replay-0000000000000000"
_CONTROL = frozenset({Success, StreamError, Subscription, Authorization, Listening, Ping, ApiError})
#: Polled news sources, by the settings their poller runs with.
POLLED_NEWS: dict[str, type[msgspec.Struct]] = {
    "newsapi": NewsApiSettings,
    "finnhub.news": FinnhubNewsSettings,
}
_UNSET: Any = object()
_CAPTURE = 10_000_000  # the replay's own mailboxes: never full (drained after every record)


class ReplaySummary(msgspec.Struct, kw_only=True):
    tapes: list[str]
    records: int = 0  # tape records read
    frames: int = 0  # records replayed (decoded)
    events: int = 0  # data messages published
    history: int = 0  # warm-up bars (recorded history), given to the bank before live data
    skipped: dict[str, int] = {}  # records of sources not replayed, by source
    control: int = 0  # protocol messages (not published)
    decode_errors: int = 0
    unknown: int = 0  # messages of unknown types (counted by the decoders)
    ignored_bytes: int = 0  # a torn tail of a tape
    crashes: dict[str, int] = {}  # actors that crashed (and were restarted), by name
    lost_in_crashes: int = 0  # messages of the batches that crashed them
    intents: int = 0
    orders: int = 0
    fills: int = 0
    denied: int = 0
    realized: float = 0.0
    unrealized: float = 0.0
    fees: float = 0.0
    pnl: float = 0.0  # realised + unrealised - fees
    positions: dict[str, str] = {}
    digest: str = ""
    first_ns: int = 0
    last_ns: int = 0
    elapsed: float = 0.0  # wall seconds
    events_per_second: float = 0.0
    latency: dict[str, dict[str, float]] = {}  # stage -> n and percentiles (us)


def digest_intents(intents: Iterable[OrderIntent]) -> str:
    """BLAKE2b-256 of the intents' canonical JSON, one per line, in order."""
    h = hashlib.blake2b(digest_size=32)
    for intent in intents:
        h.update(msgspec.json.encode(intent))
        h.update(b"\n")
    return h.hexdigest()


class _LiveOrder:
    """Records in the order live published them. A gap's fill is tapped after the frame that
    revealed the gap (stamped with that frame's time), but live it went out before that frame's
    messages: looking a window ahead, it is moved back in front of its frame."""

    def __init__(self, records: Iterator[TapeRecord], window: int = 4096) -> None:
        self._records = records
        self._window = window
        self._ahead: deque[TapeRecord] = deque()
        self._fills: dict[tuple[str, int], TapeRecord] = {}  # in the window, by (source, ts)

    def __iter__(self) -> _LiveOrder:
        return self

    def __next__(self) -> TapeRecord:
        ahead = self._ahead
        while len(ahead) < self._window:
            record = next(self._records, None)
            if record is None:
                break
            ahead.append(record)
            if record.source.endswith(BACKFILL_SUFFIX):
                self._fills[record.source, record.ts_ns] = record
        if not ahead:
            raise StopIteration
        record = ahead[0]
        fill = self._fills.pop((record.source + BACKFILL_SUFFIX, record.ts_ns), None)
        if fill is not None:
            ahead.remove(fill)
            return fill
        ahead.popleft()
        if record.source.endswith(BACKFILL_SUFFIX):
            self._fills.pop((record.source, record.ts_ns), None)
        return record


class _Capture:
    """What the graph publishes of some kinds, collected for the summary and the report."""

    def __init__(self, app: App, kinds: Iterable[type]) -> None:
        self.mailbox: Mailbox[Any] = Mailbox("replay", _CAPTURE)
        for kind in kinds:
            app.bus.subscribe(self.mailbox, kind)

    async def take(self) -> list[Any]:
        taken: list[Any] = []
        while len(self.mailbox):
            taken += await self.mailbox.receive_batch(_CAPTURE)
        return taken


class TapeDecoders:
    """One decoder per source, made on first sight: JSON or msgpack as the first frame shows.
    ``trade_updates`` frames decode only when asked (``tickd tape cat``): a replay skips them."""

    def __init__(self, *, trade_updates: bool = False) -> None:
        self.trade_updates = trade_updates
        self._by_source: dict[tuple[str, str], Any] = {}
        # Polled news as each poller remembers it (its lookback, its capacity).
        self.seen_news = {
            source: SeenNews(round(_default(kind, "lookback") * 1e9), _default(kind, "max_seen"))
            for source, kind in POLLED_NEWS.items()
        }

    def decode(self, record: TapeRecord) -> Decoded | None:
        """The record's messages; None for a source that is not decoded."""
        data = record.data
        # Each frame says its own encoding: a JSON frame starts with a bracket or a brace.
        first = data[:1]
        if first.isspace():  # rare: look past the whitespace (a copy, so only then)
            first = data.lstrip()[:1]
        encoding: Literal["json", "msgpack"] = "json" if first in (b"[", b"{") else "msgpack"
        key = (record.source, encoding)
        decoder = self._by_source.get(key, _UNSET)
        if decoder is _UNSET:
            decoder = self._by_source[key] = self._make(record.source, encoding)
        if decoder is None:
            return None
        decoded: Decoded = decoder(data, record.ts_ns)
        return decoded

    def _make(
        self, source: str, encoding: Literal["json", "msgpack"]
    ) -> Callable[[bytes, int], Decoded] | None:
        if source.startswith(f"{HISTORY_SOURCE}."):
            asset = source.removeprefix(f"{HISTORY_SOURCE}.")
            if asset == "stocks":
                return partial(_history_page, asset="stocks")
            return partial(_history_page, asset="crypto") if asset == "crypto" else None
        if source == "alpaca.trade_updates":
            return TradingStreamDecoder(encoding).decode if self.trade_updates else None
        feed = source.removesuffix(BACKFILL_SUFFIX)  # a gap's fill: a frame of its feed's
        if feed in ("alpaca.stocks", "alpaca.crypto", "alpaca.news"):
            stream: Stream = feed.removeprefix("alpaca.")  # type: ignore[assignment]
            return AlpacaDecoder(stream, encoding).decode
        if source == "finnhub.trades":
            return FinnhubDecoder().decode
        if source == "newsapi":
            return decode_articles
        if source == "finnhub.news":
            return decode_company_news
        return None

    def fresh_news(self, source: str, news: list[Any], now_ns: int) -> list[Any]:
        """Polled news as its poller publishes it: only what it had not seen, oldest first."""
        fresh, _ = self.seen_news[source].admit(news, now_ns)
        fresh.sort(key=lambda item: item.ts_event)
        return fresh


def _default(settings: type[msgspec.Struct], name: str) -> Any:
    return next(f.default for f in msgspec.structs.fields(settings) if f.name == name)


def _history_page(data: bytes, ts_recv: int, *, asset: Literal["stocks", "crypto"]) -> Decoded:
    return decode_bars_page(data, asset, ts_recv)


class _Series:
    """What the report draws: prices, the indicators after each batch, fills, equity."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.symbols: dict[str, SymbolSeries] = {}
        self.trades: list[ReportTrade] = []
        self.equity: list[tuple[int, float]] = []
        self._last: dict[str, tuple[float, ...]] = {}

    def snapshot(self, snap: IndicatorSnapshot) -> None:
        self._last[snap.symbol] = snap.values

    def price(self, event: Any) -> None:
        close = event.close if isinstance(event, Bar | CryptoBar) else event.price
        series = self.symbols.get(event.symbol)
        if series is None:
            series = self.symbols[event.symbol] = SymbolSeries(
                ts_ns=[], close=[], indicators={c: [] for c in self.columns}
            )
        series.ts_ns.append(event.ts_event)
        series.close.append(float(close))
        values = self._last.get(event.symbol, ())
        for i, column in enumerate(self.columns):
            series.indicators[column].append(values[i] if i < len(values) else math.nan)

    def fill(self, update: OrderUpdate) -> None:
        order = update.order
        self.trades.append(
            ReportTrade(
                ts_ns=update.ts_event or 0,
                symbol=order.symbol,
                side="buy" if order.side == "buy" else "sell",
                qty=float(update.qty or 0),
                price=float(update.price or 0),
                strategy=order.client_order_id[:12],
            )
        )


class Replayer:
    """One replay of ``paths`` (files, or directories of rotated files) under ``config``."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        config: Config,
        *,
        speed: float | None = None,
        pace_clock: Clock | None = None,
        progress: Callable[[int, int], None] | None = None,
        report: bool = False,
    ) -> None:
        """``progress(records, bytes)`` is called after each record with the records replayed
        and the bytes of the tape files read so far (of :meth:`total_bytes`)."""
        if speed is not None and not speed > 0:
            raise ValueError(f"replay speed must be > 0, got {speed}")
        self.files = [p for path in paths for p in tape_paths(path)]
        if not self.files:
            raise FileNotFoundError(f"no tape files in {', '.join(map(str, paths))}")
        self.config = config
        self.speed = speed
        self.pace_clock: Clock = pace_clock or LiveClock()
        self.progress = progress
        self.report = report
        self.intents: list[OrderIntent] = []
        self.updates: list[OrderUpdate] = []
        self.series: _Series | None = None
        self.summary = ReplaySummary(tapes=[str(p) for p in self.files])

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    async def run(self) -> ReplaySummary:
        with tempfile.TemporaryDirectory(prefix="tickd-replay-") as state:
            (Path(state) / "order-salt").write_text(REPLAY_SALT + "\n", encoding="ascii")
            config = msgspec.structs.replace(
                self.config,
                state_dir=state,
                broker=msgspec.structs.replace(self.config.broker, kind="sim", live=False),
                # The tape holds the history the live daemon warmed up from: no fetching.
                alpaca=msgspec.structs.replace(self.config.alpaca, warmup_bars=0),
            )
            return await self._run(config)

    async def _run(self, config: Config) -> ReplaySummary:
        summary, decoders = self.summary, TapeDecoders()
        # One file after another, as given (a rotated set sorts by name): a file's records are
        # in the order the feeds handed them over, which a merge by time would not keep.
        readers = [TapeReader(path) for path in self.files]
        records: Iterator[TapeRecord] = _LiveOrder(itertools.chain.from_iterable(readers))
        first = next(records, None)
        if first is None:
            summary.digest = digest_intents(())
            return summary
        clock = ManualClock(first.ts_ns)
        app = App(config, clock=clock, feeds=False)
        intents = _Capture(app, [OrderIntent])
        updates = _Capture(app, [OrderUpdate])
        series = None
        if self.report and hasattr(app, "indicators"):
            series = self.series = _Series(app.indicators.columns)
            snapshots = _Capture(app, [IndicatorSnapshot])
            bars = config.runtime.bank_input == "bars"
            prices = _Capture(app, [Bar, CryptoBar] if bars else [Trade, CryptoTrade])
        decode_time = LatencyHistogram()
        skipped: Counter[str] = Counter()
        pace, speed, progress = self.pace_clock, self.speed, self.progress
        publish, drained = app.bus.publish_many, app.drained
        started = time.perf_counter()
        last_equity_ns = 0
        history: list[Any] = []
        async with anyio.create_task_group() as tg:
            await tg.start(app.run)
            previous = first.ts_ns
            record: TapeRecord | None = first
            while record is not None:
                summary.records += 1
                ts = record.ts_ns
                if speed is not None and ts > previous:
                    await pace.sleep((ts - previous) / 1e9 / speed)
                previous = max(previous, ts)
                t0 = time.perf_counter_ns()
                decoded = decoders.decode(record)
                if decoded is None:
                    skipped[record.source] += 1
                else:
                    decode_time.record(time.perf_counter_ns() - t0)
                    summary.frames += 1
                    summary.decode_errors += len(decoded.errors)
                    summary.unknown += len(decoded.unknown)
                    data = decoded.messages
                    if not _CONTROL.isdisjoint(map(type, data)):  # a handshake frame
                        data = [m for m in data if type(m) not in _CONTROL]
                        summary.control += len(decoded.messages) - len(data)
                    if record.source.startswith(HISTORY_SOURCE):
                        history += data  # the warm-up, given to the graph before live data
                        summary.history += len(data)
                        data = []
                    elif data and history:
                        await self._warm_up(app, history)
                        history = []
                    if data and record.source in POLLED_NEWS:
                        data = decoders.fresh_news(record.source, data, ts)
                    if data:
                        summary.events += len(data)
                        clock.set(max(clock.now_ns(), ts))
                        await publish(data)
                        await drained()
                        self.intents += await intents.take()
                        new_updates = await updates.take()
                        if new_updates:
                            self.updates += new_updates
                        if series is not None:
                            for snap in await snapshots.take():
                                series.snapshot(snap)
                            for event in await prices.take():
                                series.price(event)
                            filled = [u for u in new_updates if u.event in ("fill", "partial_fill")]
                            for update in filled:
                                series.fill(update)
                            if filled or ts - last_equity_ns >= 60 * 10**9:
                                last_equity_ns = ts
                                series.equity.append((ts, self._equity(app)))
                if progress is not None:
                    progress(summary.records, sum(r.position for r in readers))
                record = next(records, None)
            if history:  # a tape with history and nothing after it still warms up
                await self._warm_up(app, history)
            summary.last_ns = previous
            app.stop()
        summary.first_ns = first.ts_ns
        summary.elapsed = time.perf_counter() - started
        summary.ignored_bytes = sum(reader.ignored_bytes for reader in readers)
        self._finish(app, skipped, decode_time)
        return summary

    @staticmethod
    async def _warm_up(app: App, history: list[Any]) -> None:
        history.sort(key=lambda bar: (bar.ts_event, bar.symbol))  # as WarmUp.fetch gives it
        await app.warm_up(history)
        await app.drained()

    @staticmethod
    def _equity(app: App) -> float:
        broker = app.broker
        fees = float(broker.stats.fees) if isinstance(broker, SimBroker) else 0.0
        return float(app.portfolio.pnl()) - fees

    def _finish(self, app: App, skipped: Counter[str], decode_time: LatencyHistogram) -> None:
        summary = self.summary
        summary.skipped = dict(skipped)
        summary.events_per_second = summary.events / summary.elapsed if summary.elapsed else 0.0
        summary.digest = digest_intents(self.intents)
        summary.intents = len(self.intents)
        summary.fills = sum(1 for u in self.updates if u.event in ("fill", "partial_fill"))
        if hasattr(app, "broker_actor"):
            summary.orders = app.broker_actor.sent
            summary.denied = sum(app.risk.denied.values())
            portfolio = app.portfolio
            summary.realized = round(float(portfolio.realized()), 6)
            summary.unrealized = round(float(portfolio.unrealized()), 6)
            summary.fees = (
                round(float(app.broker.stats.fees), 6) if isinstance(app.broker, SimBroker) else 0.0
            )
            summary.pnl = round(summary.realized + summary.unrealized - summary.fees, 6)
            summary.positions = {
                s: str(p.qty) for s, p in sorted(portfolio.positions.items()) if p.qty
            }
        summary.crashes = dict(app.supervisor.restarts)
        summary.lost_in_crashes = sum(actor.lost_in_crashes for actor in app.actors)
        summary.latency = {"decode": decode_time.summary()}
        for actor in app.actors:
            summary.latency[actor.name] = actor.handle_time.summary()

    def report_data(self, title: str) -> ReportData:
        series = self.series or _Series(())
        return ReportData(
            title=title,
            summary=msgspec.to_builtins(self.summary),
            symbols=series.symbols,
            trades=series.trades,
            equity=series.equity,
        )


async def replay(
    paths: Sequence[str | Path],
    config: Config,
    *,
    speed: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Replay ``paths`` under ``config`` (see the module); the summary of the run."""
    return await Replayer(paths, config, speed=speed, progress=progress).run()
