"""Feed faults: the exchange killed and restarted, a half-open connection, malformed frames.

Real parts only: the fake exchange's market-data server (``daemon/fake_exchange/stream.py``) on
loopback, and the daemon's :class:`~tickd.daemon.feeds.alpaca.AlpacaFeed` with its
:class:`~tickd.daemon.feeds.backfill.BarBackfill` gap fill, built as ``daemon/app.py`` builds
them (msgpack, the default reconnect, ping and backfill settings), one feed for stocks and one
for a crypto pair. A kill aborts every connection (a TCP reset, no close frame) and closes the
listening port, while the exchange's market goes on; the restart listens on the same port again.

The fake market runs ``speed`` times faster than the wall clock (a minute bar every 0.5 s at 120),
so the feeds read the market's clock for their stamps and gap times (live, both are the wall
clock): a gap's times then name the bars the exchange made while it was down.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Literal

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from bench.harness import Row
from bench.reliability.figures import figure, percentile
from tickd.codecs.schema import Bar, ChannelSets, CryptoBar, CryptoTrade, Trade
from tickd.daemon.clock import LiveClock
from tickd.daemon.fake_exchange.chaos import Chaos, ChaosSettings
from tickd.daemon.fake_exchange.market import Market, MarketSettings
from tickd.daemon.fake_exchange.stream import StreamServer, StreamSettings
from tickd.daemon.feeds.alpaca import AlpacaFeed, AlpacaFeedSettings
from tickd.daemon.feeds.backfill import BackfillSettings, BarBackfill
from tickd.daemon.feeds.base import FeedGap

__all__ = ["figures", "half_open", "malformed", "restarts"]

_KEY, _SECRET = "fake-key", "fake-secret"
_STOCKS, _CRYPTO = ("AAPL", "MSFT"), ("BTC/USD",)
Asset = Literal["stocks", "crypto"]
# The kinds of bad input the malformed scenario injects, and the chaos switch of each.
MALFORMED = ("invalid_utf8", "bad_json", "missing_fields", "nan_price", "unknown_type")
BROKEN = ("reserved_bit", "opcode", "truncated")  # frames that break the websocket protocol itself
KINDS = (*MALFORMED, "garbage", "oversized", *BROKEN)


def figures(quick: bool) -> list[Row]:
    """Every feed scenario at CI size (``quick``) or at the published table's size."""
    rows = anyio.run(restarts, 20 if quick else 50, (0.2, 0.8) if quick else (0.3, 1.5))
    rows += anyio.run(half_open, 3 if quick else 10)
    rows += anyio.run(malformed, 4 if quick else 50)
    return rows


class _MarketClock(LiveClock):
    """Real sleeps and durations; wall-clock readings from the fake market's clock."""

    def __init__(self, market: Market) -> None:
        self._market = market

    def now_ns(self) -> int:
        return self._market.now_ns()


class _Exchange:
    """The fake exchange's market data side, killable: its market runs on while it is down."""

    def __init__(self, tasks: TaskGroup, symbols: tuple[str, ...], speed: float) -> None:
        self.market = Market(MarketSettings(symbols=symbols, speed=speed))
        self.chaos = Chaos(ChaosSettings())
        self.clock = _MarketClock(self.market)
        self.settings = StreamSettings(key=_KEY, secret=_SECRET)
        self.server: StreamServer | None = None
        self.url = ""
        self._tasks = tasks
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        tasks.start_soon(self.market.run)

    async def start(self) -> float:
        """Listen (on the same port again after a kill); returns when, ``time.monotonic()``."""
        self.server = StreamServer(self.market, self.chaos, self.settings)
        self.url = await self._tasks.start(self._serve, self.server)
        port = int(self.url.rsplit(":", 1)[1])
        self.settings = msgspec.structs.replace(self.settings, port=port)
        return time.monotonic()

    async def kill(self) -> None:
        """Every connection aborted, the port closed: a crash as the clients see it."""
        assert self.server is not None
        self.server.abort_connections()
        self._scope.cancel()
        await self._stopped.wait()

    async def _serve(self, server: StreamServer, *, task_status: TaskStatus[str]) -> None:
        self._scope, self._stopped = anyio.CancelScope(), anyio.Event()
        with self._scope:
            await server.run(task_status=task_status)
        self._stopped.set()

    def feed(
        self,
        asset: Asset,
        symbols: tuple[str, ...],
        watch: _Watch,
        encoding: Literal["msgpack", "json"] = "msgpack",
        path: str = "/v2/iex",
    ) -> AlpacaFeed:
        """A market feed (trades and minute bars) and its backfill, as the daemon builds them."""
        settings = AlpacaFeedSettings(
            url=self.url + (path if asset == "stocks" else "/v1beta3/crypto/us"),
            stream=asset,
            encoding=encoding,
            channels=ChannelSets(trades=symbols, bars=symbols),
            silence_limit=300.0,  # the daemon's default (config.alpaca.silence_limit)
            market="us_equity" if asset == "stocks" else "crypto",
        )
        backfill = BarBackfill(
            BackfillSettings(
                symbols=symbols, asset=asset, base_url=self.url.replace("ws://", "http://")
            ),
            _KEY,
            _SECRET,
            self.clock,
        )
        watch.wanted = {(c, s) for c in ("trades", "bars") for s in symbols}
        watch.backfill = backfill
        feed = AlpacaFeed(settings, _KEY, _SECRET, watch.publish, self.clock, fill_gap=watch.fill)
        watch.feed = feed
        return feed


class _Watch:
    """What one feed publishes, as the daemon's bus gets it: live data, gaps, backfilled bars."""

    def __init__(self) -> None:
        self.feed: AlpacaFeed | None = None
        self.backfill: BarBackfill | None = None
        self.wanted: set[tuple[str, str]] = set()
        self.bars: list[Bar | CryptoBar] = []  # in publish order, live and backfilled
        self.gaps: list[FeedGap] = []
        self.live = 0  # live data messages
        # Since mark(), on a connection opened after it (frames of the lost connection still
        # queued at the kill do not count): the first live data, (channel, symbol) streaming.
        self.first_live = 0.0  # time.monotonic()
        self.seen: set[tuple[str, str]] = set()
        self.attempts = 0  # reconnect attempts (backoff waits) since mark()
        self.gave_up = 0.0  # time.monotonic() of the first since mark(): the connection given up
        self._connects = 0  # the feed's connections at mark()
        self._filled: list[Any] | None = None

    def mark(self) -> None:
        assert self.feed is not None
        self.first_live, self.seen, self.attempts, self.gave_up = 0.0, set(), 0, 0.0
        self._connects = self.feed.stats.connects

    @property
    def restored(self) -> bool:
        return self.wanted <= self.seen

    async def fill(self, gap: FeedGap) -> list[Any]:
        assert self.backfill is not None
        self._filled = list(await self.backfill(gap))
        return self._filled

    async def publish(self, messages: list[Any]) -> None:
        if messages is self._filled:
            self.bars += messages
            return
        assert self.feed is not None
        new = self.feed.stats.connects > self._connects
        live = False
        for message in messages:
            kind = type(message)
            if kind is FeedGap:
                self.gaps.append(message)
                continue
            live = True
            if not new:
                continue
            if kind is Trade or kind is CryptoTrade:
                self.seen.add(("trades", message.symbol))
            elif kind is Bar or kind is CryptoBar:
                self.seen.add(("bars", message.symbol))
                self.bars.append(message)
        if live:
            self.live += 1
            if new and not self.first_live:
                self.first_live = time.monotonic()


def _count_attempts(watch: _Watch) -> None:
    """Count the feed's reconnect attempts: each one waits its backoff first."""
    assert watch.feed is not None
    backoff = watch.feed.backoff
    next_delay = backoff.next_delay

    def counted(at_least: float = 0.0) -> float:
        watch.attempts += 1
        watch.gave_up = watch.gave_up or time.monotonic()
        return next_delay(at_least)

    backoff.next_delay = counted  # type: ignore[method-assign]


async def _until(done: Callable[[], bool], limit: float) -> bool:
    with anyio.move_on_after(limit):
        while not done():
            await anyio.sleep(0.005)
        return True
    return False


async def restarts(trials: int, outage: tuple[float, float], seed: int = 9) -> list[Row]:
    """Kill the exchange ``trials`` times for a random ``outage`` (seconds) each; see the module."""
    rng = random.Random(seed)
    watches = {"stocks": _Watch(), "crypto": _Watch()}
    recovery: list[float] = []
    attempts: list[int] = []
    restored = lost = 0
    outages: list[tuple[int, int]] = []  # (killed, back up), on the market's clock
    gaps_at: list[dict[str, int]] = []  # each feed's gap reports before each kill
    async with anyio.create_task_group() as tasks:
        exchange = _Exchange(tasks, (*_STOCKS, *_CRYPTO), speed=120.0)
        await exchange.start()
        for asset, symbols in (("stocks", _STOCKS), ("crypto", _CRYPTO)):
            watch = watches[asset]
            await tasks.start(exchange.feed(asset, symbols, watch).run)  # type: ignore[arg-type]
            _count_attempts(watch)
        if not await _until(lambda: all(w.restored for w in watches.values()), 10):
            raise RuntimeError("the feeds never streamed every subscription")
        for _ in range(trials):
            # Live data for a while first: restarts are not back to back, and the feed's fast
            # reconnect phase is armed only by data that has flowed for a second.
            await anyio.sleep(rng.uniform(1.2, 2.0))
            gaps_at.append({asset: len(w.gaps) for asset, w in watches.items()})
            await exchange.kill()
            killed = exchange.market.now_ns()  # every frame stamped before the kill is older
            for watch in watches.values():
                watch.mark()
            await anyio.sleep(rng.uniform(*outage))
            outages.append((killed, exchange.market.now_ns()))  # nothing new can come sooner
            up = await exchange.start()
            await _until(lambda: all(w.restored for w in watches.values()), 10)
            for watch in watches.values():
                restored += watch.restored
                if watch.first_live:
                    recovery.append(watch.first_live - up)
                else:
                    lost += 1
                attempts.append(watch.attempts)
        gaps_at.append({asset: len(w.gaps) for asset, w in watches.items()})
        gaps = sum(len(w.gaps) for w in watches.values())
        reported = sum(
            _one_gap_over(w.gaps[gaps_at[i][asset] : gaps_at[i + 1][asset]], *outages[i])
            for asset, w in watches.items()
            for i in range(trials)
        )
        missing, dropped, expected, wrong = _bar_audit(exchange.market, watches.values())
        filled = sum(w.backfill.stats.bars for w in watches.values() if w.backfill is not None)
        tasks.cancel_scope.cancel()
    count = trials * len(watches)
    name = "exchange restart"
    if not recovery:
        recovery = [float("inf")]
    return [
        figure(f"{name}: server up -> data, p50", percentile(recovery, 50), "s", "<=", 0.5),
        figure(f"{name}: server up -> data, p95", percentile(recovery, 95), "s"),
        figure(f"{name}: feeds that never streamed again", lost, "feeds", "==", 0),
        figure(f"{name}: reconnect attempts per outage, p50", percentile(attempts, 50), "tries"),
        figure(f"{name}: reconnect attempts per outage, max", max(attempts), "tries"),
        figure(f"{name}: subscriptions restored", 100 * restored / count, "%", "==", 100),
        figure(
            f"{name}: outages reported by exactly one gap spanning them",
            100 * reported / count,
            "%",
            "==",
            100,
        ),
        figure(f"{name}: gap reports / outages", gaps / count, "gaps"),
        figure(f"{name}: minute bars expected", expected, "bars"),
        figure(f"{name}: minute bars backfilled", filled, "bars"),
        figure(f"{name}: minute bars missing after backfill", missing, "bars", "==", 0),
        figure(f"{name}: minute bars unlike the exchange's", wrong, "bars", "==", 0),
        figure(f"{name}: bars delivered twice, dropped as stale by the bank", dropped, "bars"),
    ]


def _one_gap_over(gaps: list[FeedGap], killed: int, up: int) -> bool:
    """One feed's reports for one outage (those after its kill, before the next): exactly one
    gap, from before the kill to after the server was back."""
    return len(gaps) == 1 and gaps[0].start_ns <= killed and gaps[0].end_ns >= up


def _bar_audit(market: Market, watches: Any) -> tuple[int, int, int, int]:
    """(missing, delivered twice, expected, unlike the exchange's): the bars each feed published,
    taken as the indicator bank takes them (a bar at or before the last one of its symbol is
    stale and dropped), against every bar the exchange made between the first and last taken."""
    missing = dropped = expected = wrong = 0
    for watch in watches:
        taken: dict[str, dict[int, Bar | CryptoBar]] = {}
        for bar in watch.bars:
            mine = taken.setdefault(bar.symbol, {})
            if mine and bar.ts_event <= max(mine):
                dropped += 1
                continue
            mine[bar.ts_event] = bar
        for symbol, mine in taken.items():
            made = {b.ts_event: b for b in market.bars(symbol, min(mine), max(mine))}
            expected += len(made)
            missing += len(made.keys() - mine.keys())
            wrong += len(mine.keys() - made.keys())
            wrong += sum(
                1 for ts, bar in mine.items() if ts in made and made[ts].close != bar.close
            )
    return missing, dropped, expected, wrong


async def half_open(trials: int, seed: int = 9) -> list[Row]:
    """The server stops sending and reading (``stall_after``) without closing, in ``trials``
    connections at once (one exchange each), each at a random point of the ping cycle, with the
    daemon's default ping settings: time from the stall to the feed giving the connection up
    (the keepalive's verdict; the figure with the target), and to a new connection open (that
    adds the backoff: up to ``backoff_initial`` when the fast phase is not armed yet)."""
    rng = random.Random(seed)
    detected: list[float] = []
    reconnected: list[float] = []

    async def trial(phase: float) -> None:
        async with anyio.create_task_group() as tasks:
            exchange = _Exchange(tasks, ("AAPL",), speed=60.0)
            await exchange.start()
            watch = _Watch()
            feed = exchange.feed("stocks", ("AAPL",), watch)
            await tasks.start(feed.run)
            _count_attempts(watch)
            if not await _until(lambda: watch.live > 0, 10):
                raise RuntimeError("no data before the stall")
            await anyio.sleep(phase * feed.settings.ping_interval)
            exchange.chaos.update({"stall_after": 1})  # at the next data frame
            await _until(lambda: "stall" in exchange.chaos.injected, 10)
            stalled = time.monotonic()
            watch.mark()
            exchange.chaos.update({"stall_after": 0})
            if await _until(lambda: watch.gave_up > 0, 30):
                detected.append(watch.gave_up - stalled)
            if await _until(lambda: feed.stats.connects >= 2, 30):
                reconnected.append(time.monotonic() - stalled)
            tasks.cancel_scope.cancel()

    async with anyio.create_task_group() as tasks:
        for _ in range(trials):
            tasks.start_soon(trial, rng.random())
    name = "half-open connection"
    worst = max(detected) if len(detected) == trials else float("inf")
    slowest = max(reconnected) if len(reconnected) == trials else float("inf")
    return [
        figure(f"{name}: stall -> given up, max of {trials}", worst, "s", "<=", 10.0),
        figure(f"{name}: stall -> given up, p50", percentile(detected or [worst], 50), "s"),
        figure(f"{name}: stall -> reconnected, max of {trials}", slowest, "s"),
    ]


async def malformed(per_kind: int) -> list[Row]:
    """Each kind of bad frame, ``per_kind`` times into a msgpack and a JSON feed: every bad input
    counted (decode errors, unknown types, or the protocol errors an oversized frame or a
    protocol-breaking one closes the connection for), no crash, and good data flowing before,
    during and after."""
    rows: list[Row] = []
    crashes: list[str] = []
    flowed = 0
    for kind in KINDS:
        injected, counted, ok = await _malformed_kind(kind, per_kind, crashes)
        flowed += ok
        name = f"malformed {kind.replace('_', ' ')}"
        rows.append(figure(f"{name}: frames injected", injected, "frames"))
        rate = 100 * counted / injected if injected else 0.0
        rows.append(figure(f"{name}: counted / injected", rate, "%", "==", 100))
    rows.append(figure("malformed: feed crashes", len(crashes), "crashes", "==", 0))
    ok_rate = 100 * flowed / len(KINDS)
    rows.append(figure("malformed: good data before, during and after", ok_rate, "%", "==", 100))
    return rows


async def _malformed_kind(kind: str, per_kind: int, crashes: list[str]) -> tuple[int, int, bool]:
    """(injected, counted, good data flowed throughout) for one kind, two feeds."""
    every = 3
    if kind in MALFORMED:
        switch: dict[str, Any] = {"malformed_every": every, "malformed_kinds": (kind,)}
        fault = f"malformed_{kind}"
    elif kind in BROKEN:
        switch, fault = {"broken_every": every, "broken_kinds": (kind,)}, f"broken_{kind}"
    else:
        switch, fault = {f"{kind}_every": every}, kind
    async with anyio.create_task_group() as tasks:
        exchange = _Exchange(tasks, ("AAPL",), speed=60.0)
        await exchange.start()
        watches = [_Watch(), _Watch()]
        feeds = [
            exchange.feed("stocks", ("AAPL",), watches[0], "msgpack", "/v2/iex"),
            exchange.feed("stocks", ("AAPL",), watches[1], "json", "/v2/sip"),
        ]
        for feed in feeds:
            await tasks.start(_guarded, feed, crashes)

        def counted() -> int:
            if kind == "unknown_type":
                return sum(f.decoder.stats.unknown for f in feeds)
            if kind == "oversized" or kind in BROKEN:
                return sum(f.stats.protocol_errors for f in feeds)
            return sum(f.stats.decode_errors for f in feeds)

        before = await _until(lambda: all(w.live > 0 for w in watches), 10)
        baseline, live = counted(), [w.live for w in watches]
        exchange.chaos.update(switch)
        await _until(lambda: exchange.chaos.injected.get(fault, 0) >= 2 * per_kind, 30)
        exchange.chaos.update(
            dict.fromkeys(switch, 0) | {"malformed_kinds": MALFORMED, "broken_kinds": BROKEN}
        )
        injected = exchange.chaos.injected.get(fault, 0)
        during = all(w.live > n for w, n in zip(watches, live, strict=True))
        live = [w.live for w in watches]
        after = await _until(
            lambda: (
                counted() - baseline >= injected
                and all(w.live > n for w, n in zip(watches, live, strict=True))
            ),
            10,
        )
        result = counted() - baseline
        tasks.cancel_scope.cancel()
    if not (before and during and after):
        structlog.get_logger("bench").error(
            "malformed_flow", kind=kind, before=before, during=during, after=after
        )
    return injected, result, before and during and after


async def _guarded(
    feed: AlpacaFeed,
    crashes: list[str],
    *,
    task_status: TaskStatus[None],
) -> None:
    """Run the feed; an exception out of it is a crash, recorded for the figure."""
    try:
        await feed.run(task_status=task_status)
    except Exception as exc:
        crashes.append(f"{feed.source}: {exc!r}")
