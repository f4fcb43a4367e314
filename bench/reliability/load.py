"""Overload and soak: the daemon's real graph under a burst of 10x what it sustains, and for
minutes at 20k msg/s with random disconnects.

The graph is :class:`tickd.daemon.app.App` built from a configuration, as ``tickd run`` builds
it: the Alpaca feed (stocks: trades, quotes, bars) -> bus -> indicator bank (fed by trades) ->
strategy host (``ema_cross`` on bars, every symbol) -> risk -> sim broker, order updates back
through the bus. It runs in this process, so its mailboxes and counters can be read exactly; the
market comes from a frame writer in a subprocess (``python -m bench.reliability.load`` prints
``PORT <n>``), so the RSS, file descriptors and tasks sampled here are the daemon's and the test
runner's, never the generator's. The writer speaks Alpaca's msgpack handshake and then writes
pre-built websocket frames of 10 messages (2 trades, 7 or 8 quotes, a bar in every tenth frame,
20 symbols) on a schedule of (rate, seconds) phases named in the URL's first path segment (the
second names the run); it can also abort the connection (a TCP reset, no close frame) at
exponentially distributed times. A one-pass schedule is written once, on the run's first
connection: a reconnect gets nothing again, as a live market is not replayed. On it, the writer
drops a client whose backlog in its transport passes ``SLOW_CLIENT`` (its kernel send buffer
pinned small, so the backlog shows there), checked after each write, before any wait, as Alpaca
drops a slow client (error 407); it reports each such connection on its stdout (``REPORT``:
frames written per phase and when, its largest backlog, whether it dropped the client), in
``time.perf_counter()``, the system's monotonic clock, which the daemon's side shares.

Overload. Left alone the graph decodes a few hundred thousand messages a second, more than a
loopback writer offers, so the consumer is made the bottleneck on purpose, the way a real
strategy is: a quote strategy (:class:`QuoteProbe`) that spends ``QUOTE_COST`` of CPU on every
quote it sees and sends an order every ``ORDER_EVERY`` quotes; the cost is high enough that the
sustainable rate is a few thousand msg/s, so that 10x it is a rate the writer really offers
on a 2-core machine (it is measured, not assumed). The *sustainable rate* is the highest offered
rate at which the graph, with the host's quote conflation off, still handles every quote and
ends within ``MAX_LAG`` of the writer's last frame (steps of a fixed length, each on a fresh
graph): measured without conflation because it is the rate at which the consumer handles every
quote; beyond it the daemon must conflate. The burst then offers 10x that rate for ``burst``
seconds between two phases at the sustainable rate. What must hold: the writer wrote at least
90 % of 10x during the burst; the daemon was never dropped as a slow client (one connection);
every trade sent reaches the bank (none dropped by the feed's raw queue); quotes seen + quotes
conflated == quotes sent; every intent is approved or denied (counted) and every order update
the broker published reaches the strategy; every mailbox's and raw queue's high-water mark is
within its capacity; and the RSS grows by no more than what the buffers held at their fullest
plus ``RSS_SLACK``. The control (conflation off, in the tests) shows the burst is a real
overload: the daemon falls behind its socket, is dropped, and loses trades.

Soak. The same graph (the quote strategy without the CPU cost, an order about every 30 s;
``ema_cross`` on three symbols, fed by their trades: a few orders a minute in all, as a real
book trades, see ``SOAK_ORDER_EVERY``) at
20k msg/s for ``seconds``, the writer resetting the connection every ``DROP_MEAN`` seconds on
average and writing on the next connection what the reset kept from being written, so the
average stays 20k msg/s. RSS, open file descriptors and asyncio tasks are sampled every second;
after the warm-up, the RSS slope (least squares) must stay within ``SLOPE_LIMIT`` kB/min over
the full run's samples (``QUICK_SLOPE_LIMIT`` over the quick run's 20 s: a leak per message),
and the fds and tasks may not grow. The graph is run as ``tickd run`` runs it: once ready, the
start-up heap is collected and frozen (``tickd.daemon.heap``); the samples go into a
preallocated array, not the heap they measure. (The soak found three growths, all fixed: the
sim broker kept every fill; tracing kept the stamps of a decision risk skipped as already
sent, which the writer's cycled frames make frequent; and, without the freeze, 54-83 kB/min.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from bench.harness import Row
from bench.reliability.figures import figure
from tickd.codecs.alpaca import AlpacaEncoder, SubscribeRequest, decode_client_message
from tickd.codecs.schema import Bar, OrderUpdate, Quote, Subscription, Success, Trade
from tickd.daemon.actors import Mailbox
from tickd.daemon.app import App
from tickd.daemon.config import (
    AlpacaConfig,
    BrokerConfig,
    Config,
    LogConfig,
    RiskConfig,
    RuntimeConfig,
    StrategyConfig,
    SymbolsConfig,
    TracingConfig,
)
from tickd.daemon.heap import freeze_startup_heap
from tickd.daemon.strategy_host import HostedStrategy
from tickd.strategies.base import Context, IndicatorView, OrderIntent

__all__ = ["QuoteProbe", "figures", "overload", "soak"]

SYMBOLS = (
    "AAPL",
    "MSFT",
    "AMZN",
    "GOOG",
    "META",
    "NVDA",
    "TSLA",
    "AMD",
    "INTC",
    "NFLX",
    "ORCL",
    "CRM",
    "ADBE",
    "CSCO",
    "QCOM",
    "AVGO",
    "TXN",
    "IBM",
    "UBER",
    "SHOP",
)
FRAME = 10  # messages per frame
TEMPLATES = 200  # distinct frames, cycled
QUOTE_COST = 400e-6  # CPU seconds the overload's quote strategy spends per quote
ORDER_EVERY = 200  # quotes between two of its orders
MAX_LAG = 0.5  # seconds behind the writer at the end of a sustained step, at most
SOAK_RATE = 20_000  # msg/s
DROP_MEAN = 5.0  # seconds between two connection resets, on average (soak)
# The soak's orders: the probe's one every ~30 s, and ema_cross on a few symbols. A real book
# trades a few times a minute; at several orders a second the per-order memory (risk's sent
# ids, the portfolio's executions seen, the sim broker's finished orders: bounded, but filling
# for hours at that rate) would be the slope, not a leak.
SOAK_ORDER_EVERY = 60_000
SOAK_TREND = SYMBOLS[:3]
SLOPE_LIMIT = 30.0  # kB/min: |RSS slope| after the warm-up of the full soak (9 minutes of samples)
# The quick soak's 20 s of samples, early in the run: about 1.7 B per message at 20k msg/s, so
# it catches a leak per message, not one per order (the full run's bound is for those).
QUICK_SLOPE_LIMIT = 2000.0
RSS_SLACK = 4.0  # MiB over the buffers' contents: allocator arenas and one-off caches
_HIGH_WATER = 1 << 20  # bytes buffered in the writer's transport before it waits (soak)
# Bytes waiting in the writer's transport past which it drops a client that is not keeping up,
# as Alpaca does (error 407, "slow client"), on top of what the kernel's socket buffers hold:
# the writer's, pinned to _SEND_BUFFER, and the daemon's receive buffer (overload).
SLOW_CLIENT = 1 << 20
_SEND_BUFFER = 128 << 10


# --- the market: pre-built frames ----------------------------------------------------------------


def _websocket_frame(payload: bytes) -> bytes:
    """One unmasked binary frame (server to client)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x82, size))
    elif size < 1 << 16:
        head = bytes((0x82, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x82, 127)) + size.to_bytes(8, "big")
    return head + payload


def templates() -> tuple[list[bytes], list[Counter[str]]]:
    """The writer's frames (seeded, the same in every process) and each one's messages by kind.
    A frame's quotes are for distinct symbols, so conflation only ever merges quotes of
    different frames."""
    rng = random.Random(7)
    encoder = AlpacaEncoder("stocks", "msgpack")
    start = time.time_ns() // 60_000_000_000 * 60_000_000_000 - 3_600_000_000_000
    frames: list[bytes] = []
    kinds: list[Counter[str]] = []
    for i in range(TEMPLATES):
        ts = start + i * 1_000_000
        messages: list[Any] = []
        for symbol in rng.sample(SYMBOLS, 2):
            price = round(100 * (1 + rng.gauss(0, 0.002)), 2)
            messages.append(
                Trade(symbol=symbol, ts_event=ts, price=price, size=rng.randint(1, 500))
            )
        quoted = rng.sample(SYMBOLS, FRAME - 2 - (i % 10 == 0))
        for symbol in quoted:
            bid = round(100 * (1 + rng.gauss(0, 0.002)), 2)
            messages.append(
                Quote(
                    symbol=symbol,
                    ts_event=ts,
                    bid_price=bid,
                    bid_size=100,
                    ask_price=round(bid + 0.01, 2),
                    ask_size=100,
                )
            )
        if i % 10 == 0:
            bar_ts = start + i // 10 * 60_000_000_000
            symbol = SYMBOLS[i // 10 % len(SYMBOLS)]
            messages.append(
                Bar(
                    symbol=symbol,
                    ts_event=bar_ts,
                    open=100.0,
                    high=100.5,
                    low=99.5,
                    close=100.1,
                    volume=1_000,
                )
            )
        frames.append(_websocket_frame(encoder.encode(messages)))
        kinds.append(Counter(type(m).__name__ for m in messages))
    return frames, kinds


@dataclass(frozen=True)
class Schedule:
    """What the writer does on each connection: ``phases`` of (msg/s, seconds); with ``loop``
    it repeats them until the connection ends; ``drop`` > 0 resets the connection after an
    exponentially distributed time of that mean (seconds)."""

    phases: tuple[tuple[float, float], ...]
    drop: float = 0.0
    loop: bool = False
    seed: int = 1

    def token(self) -> str:
        """The URL path segment naming this schedule."""
        phases = "_".join(f"{rate:g}x{seconds:g}" for rate, seconds in self.phases)
        return f"p{phases}-d{self.drop:g}-l{int(self.loop)}-s{self.seed}"

    @classmethod
    def parse(cls, token: str) -> Schedule:
        phases, drop, loop, seed = token.split("-")
        pairs = (p.split("x") for p in phases[1:].split("_"))
        return cls(
            tuple((float(r), float(s)) for r, s in pairs),
            float(drop[1:]),
            loop == "l1",
            int(seed[1:]),
        )

    def frames(self) -> list[int]:
        """Frames written per phase (one pass)."""
        return [round(rate * seconds / FRAME) for rate, seconds in self.phases]

    def sent(self, kinds: list[Counter[str]]) -> Counter[str]:
        """Messages by kind that one pass writes."""
        total: Counter[str] = Counter()
        per_pass = sum(kinds, Counter())
        count = sum(self.frames())
        whole, rest = divmod(count, TEMPLATES)
        for kind, n in per_pass.items():
            total[kind] = n * whole
        for i in range(rest):
            total.update(kinds[i])
        return total


# --- the writer (its own process) ----------------------------------------------------------------


_PACE: dict[str, list[float]] = {}  # looping run -> [origin, frames written], all connections
_STARTED: set[str] = set()  # one-pass runs already written: a reconnect gets nothing more


@dataclass
class Written:
    """What the writer did on one connection of a one-pass run, reported on its stdout as
    ``REPORT <json>``. Times are ``time.perf_counter()``, the system's monotonic clock, so they
    compare with the daemon's. ``phases``: (frames written, first write, last write) each."""

    key: str
    phases: list[tuple[int, float, float]] = field(default_factory=list)
    backlog: int = 0  # the most bytes ever waiting in the writer's transport
    dropped: bool = False  # as a slow client

    @property
    def frames(self) -> int:
        return sum(n for n, _, _ in self.phases)


async def _write(
    websocket: Any, frames: list[bytes], schedule: Schedule, key: str, written: Written | None
) -> None:
    """Write the schedule's frames at their rates. A looping schedule (one phase) is paced
    across connections: what a reset kept from being written goes out on the next one, and the
    writer waits while the client is behind. A one-pass schedule (``written`` its report)
    drops a client whose backlog passes ``SLOW_CLIENT``, as Alpaca does (error 407)."""
    transport = websocket.transport
    if schedule.loop:
        rate = schedule.phases[0][0]
        pace = _PACE.setdefault(key, [time.perf_counter(), 0])
        phases = [(pace, rate, math.inf)]
    else:
        phases = [
            ([time.perf_counter(), 0], rate, count)
            for (rate, _), count in zip(schedule.phases, schedule.frames(), strict=True)
        ]
    offset = 0
    for pace, rate, count in phases:
        interval = FRAME / rate
        if not schedule.loop:
            pace[0] = time.perf_counter()  # each phase paced from its own start
        first = pace[0]
        if written is not None:
            written.phases.append((0, first, first))
        while pace[1] < count:
            done = int(pace[1])
            due = min(count, int((time.perf_counter() - pace[0]) / interval) + 1, done + 512)
            chunk = b"".join(frames[(offset + i) % TEMPLATES] for i in range(done, int(due)))
            try:
                transport.write(chunk)
            except RuntimeError:  # the client closed its side (write_eof): this connection is done
                return
            pace[1] = due
            backlog = transport.get_write_buffer_size()
            if written is not None:
                written.phases[-1] = (int(due), first, time.perf_counter())
                written.backlog = max(written.backlog, backlog)
                if backlog > SLOW_CLIENT:  # checked before any wait: the client is not keeping up
                    written.dropped = True
                    transport.abort()  # what it had not read is lost, as a slow client's is
                    return
            while transport.get_write_buffer_size() > _HIGH_WATER and not transport.is_closing():
                await asyncio.sleep(0.0002)
            if transport.is_closing():
                return
            await asyncio.sleep(max(0.0, pace[0] + due * interval - time.perf_counter()))
        offset += int(count)


async def _handler(websocket: Any, frames: list[bytes]) -> None:
    token, run = websocket.request.path.strip("/").split("/")[:2]
    schedule = Schedule.parse(token)
    encoder = AlpacaEncoder("stocks", "msgpack")
    await websocket.send(encoder.encode([Success(msg="connected")]))
    await websocket.recv()  # auth: any key will do
    await websocket.send(encoder.encode([Success(msg="authenticated")]))
    request = decode_client_message(await websocket.recv(), "msgpack")
    if not isinstance(request, SubscribeRequest):
        raise ValueError(f"expected a subscription, got {request!r}")
    ack = Subscription(
        trades=request.trades or (), quotes=request.quotes or (), bars=request.bars or ()
    )
    await websocket.send(encoder.encode([ack]))
    await asyncio.sleep(0.05)  # the client's handlers are in place
    written: Written | None = None
    key = f"{token}/{run}"
    if not schedule.loop:
        if key in _STARTED:  # a reconnect: the run's market has been written (or lost)
            await websocket.wait_closed()
            return
        _STARTED.add(key)
        written = Written(key)
        # A small kernel send buffer: the backlog shows in the transport, where it is measured.
        sock = websocket.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
    writing = asyncio.ensure_future(_write(websocket, frames, schedule, key, written))
    if schedule.drop > 0:
        rng = random.Random(schedule.seed ^ id(websocket))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(writing), rng.expovariate(1 / schedule.drop))
        if not writing.done():
            websocket.transport.abort()  # a reset: no close frame
    try:
        await writing
    finally:
        if written is not None:
            print(f"REPORT {json.dumps(dataclasses.asdict(written))}", flush=True)
    await websocket.wait_closed()


async def _serve() -> None:
    from websockets.asyncio.server import serve

    frames, _ = templates()
    async with serve(
        lambda ws: _handler(ws, frames),
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,
        max_size=2**20,
    ) as server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()


class Writer:
    """The frame writer's process, seen from the daemon's side: its base URL and its reports."""

    def __init__(self, base: str, process: subprocess.Popen[str]) -> None:
        self.base = base
        self._reports: dict[str, Written] = {}
        self._runs = itertools.count(1)
        self._reading = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reading.start()

    def url(self, schedule: Schedule) -> str:
        """A URL for one run of ``schedule``: a one-pass run is written once, on its first
        connection, whatever reconnects follow."""
        return f"{self.base}/{schedule.token()}/r{next(self._runs)}"

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("REPORT "):
                data = json.loads(line.removeprefix("REPORT "))
                data["phases"] = [tuple(p) for p in data["phases"]]
                written = Written(**data)
                self._reports[written.key] = written

    def report(self, url: str) -> Written | None:
        """The writer's report on the run at ``url``, once it has finished writing it."""
        return self._reports.get(url.removeprefix(self.base + "/"))


@contextlib.contextmanager
def _writer() -> Iterator[Writer]:
    """The frame writer, for as long as the block runs."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.reliability.load"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the frame writer did not start: {line!r}")
        yield Writer(f"ws://127.0.0.1:{int(line.split()[1])}", process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the daemon under load -----------------------------------------------------------------------


class QuoteProbe:
    """A strategy on quotes: ``cost`` seconds of CPU per quote (the deliberate bottleneck), an
    order every ``order_every`` quotes (buying when flat or short, selling when long), and a
    count of what reaches it."""

    def __init__(self, symbols: Sequence[str], cost: float, order_every: int) -> None:
        self.name = "quotes"
        self.symbols = tuple(symbols)
        self.indicators = ()
        self.events = frozenset({Quote, OrderUpdate})
        self.cost_ns = round(cost * 1e9)
        self.order_every = order_every
        self.quotes = 0
        self.updates = 0
        self.intents = 0

    def on_event(
        self, event: Any, view: IndicatorView | None, context: Context
    ) -> Sequence[OrderIntent]:
        if type(event) is OrderUpdate:
            self.updates += 1
            return ()
        self.quotes += 1
        if self.cost_ns:
            until = time.perf_counter_ns() + self.cost_ns
            while time.perf_counter_ns() < until:
                pass
        if self.quotes % self.order_every:
            return ()
        self.intents += 1
        held = context.position(event.symbol) + context.working(event.symbol)
        return (
            OrderIntent(
                strategy=self.name,
                symbol=event.symbol,
                side="sell" if held > 0 else "buy",
                qty=Decimal(1),
                event_id=f"probe-{self.intents}",
                ts_event=event.ts_event,
                ts_recv=event.ts_recv,
            ),
        )


def _config(url: str, directory: str, trend: tuple[str, ...]) -> Config:
    return Config(
        state_dir=directory,
        alpaca=AlpacaConfig(
            key_id="load-key",
            secret_key="load-secret",
            feed="test",  # no REST history behind the writer: no backfill
            stream_url=url,
            stock_channels=("trades", "quotes", "bars"),
            silence_limit=0.0,
            backfill=False,
        ),
        symbols=SymbolsConfig(stocks=SYMBOLS),
        runtime=RuntimeConfig(bank_input="trades", reconnect_initial=0.05, reconnect_cap=0.5),
        risk=RiskConfig(
            trading_hours="always",
            max_orders_per_minute=100_000,
            max_order_notional=1e9,
            max_gross_exposure=1e9,
            max_daily_loss=1e9,
        ),
        broker=BrokerConfig(kind="sim"),
        strategies=(StrategyConfig(kind="ema_cross", name="trend", symbols=trend),),
        tracing=TracingConfig(exporter="none"),
        log=LogConfig(summary_interval=0.0),
    )


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Series:
    """Rows of numbers in a preallocated array: sampling the process grows none of its memory
    (a list of tuples would, a little every second, in the RSS the soak measures)."""

    def __init__(self, width: int, capacity: int = 4096) -> None:
        self._rows = np.zeros((capacity, width))
        self._n = 0

    def append(self, *row: float) -> None:
        if self._n == len(self._rows):
            self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)])
        self._rows[self._n] = row
        self._n += 1

    def __iter__(self) -> Iterator[tuple[float, ...]]:
        return iter(map(tuple, self._rows[: self._n].tolist()))

    def __getitem__(self, index: int) -> tuple[float, ...]:
        if not -self._n <= index < self._n:
            raise IndexError(index)
        return tuple(self._rows[index % self._n].tolist())


@dataclass
class Run:
    """What one run of the graph saw. ``samples``: (seconds since start, RSS kB, fds, tasks)."""

    sent: Counter[str]
    trades_banked: int = 0
    quotes_seen: int = 0
    quotes_conflated: int = 0
    quotes_dropped: int = 0
    frames_dropped: int = 0
    decode_errors: int = 0
    messages: int = 0
    connects: int = 0
    gaps: int = 0
    intents: int = 0
    decided: int = 0  # approved + denied + repeated by risk
    approved: int = 0
    denied: Counter[str] = field(default_factory=Counter)  # by risk rule
    repeated: int = 0  # a decision already sent (one order)
    submitted: int = 0  # reached the sim broker
    updates_published: int = 0
    updates_seen: int = 0
    seconds: float = 0.0
    ready_at: float = 0.0  # seconds from the start to the daemon's READY
    lag: float = 0.0  # seconds from the writer's last frame to the end of its handling
    written: Written | None = None  # the writer's report on the first connection (one pass)
    frames_read: int = 0  # frames the feed took in: handled + dropped by its raw queue
    high_water: dict[str, tuple[int, int]] = field(default_factory=dict)  # (most, capacity)
    samples: Series = field(default_factory=lambda: Series(4))  # (s, RSS kB, fds, tasks)
    published: Series = field(default_factory=lambda: Series(2))  # (seconds, feed messages)


async def _run(
    writer: Writer,
    schedule: Schedule,
    probe: QuoteProbe,
    *,
    seconds: float | None = None,
    every: float = 0.1,
    conflate: bool = True,
    trend: tuple[str, ...] = SYMBOLS,
) -> Run:
    """Build the graph, connect it to the writer on ``schedule``, and run until the writer has
    written one pass and the graph has handled all it received (or for ``seconds``, for a
    looping schedule); then stop it. Without ``conflate`` the strategy host's mailbox keys
    nothing, so it holds every quote (as ``block``): what the strategy handles one by one.
    Sample times are ``time.perf_counter()``, the writer's clock too."""
    _, kinds = templates()
    run = Run(sent=schedule.sent(kinds))
    url = writer.url(schedule)
    with tempfile.TemporaryDirectory() as directory:
        app = App(_config(url, directory, trend))
        app.host.hosted.append(HostedStrategy(probe, app.bank, SYMBOLS))
        for kind in probe.events:
            app.bus.subscribe(app.host.mailbox, kind)
        if not conflate:
            app.host.mailbox._key = lambda _: None
        feed = app.feeds[0]
        raw: list[Mailbox[Any]] = []  # this connection's raw queue (the earlier ones: noted)
        queue_frame = feed._queue_frame

        def tapped(queue: Mailbox[Any], frame: Any) -> None:
            if not raw or raw[-1] is not queue:
                if raw:
                    _note_high_water(run, raw.pop())
                raw.append(queue)
            queue_frame(queue, frame)

        feed._queue_frame = tapped  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()

        async def sample() -> None:
            while True:
                now = time.perf_counter()
                run.samples.append(now, _rss_kib(), _fds(), len(asyncio.all_tasks(loop)))
                run.published.append(now, feed.stats.messages)
                await anyio.sleep(every)

        def settled() -> bool:
            """The writer is done, and the graph has handled all it took in."""
            run.written = writer.report(url)
            if run.written is None:
                return False
            read = feed.stats.frames + feed.stats.dropped_frames
            quiet = not any(len(a.mailbox) or a.current for a in app.actors)
            return quiet and (read >= run.written.frames or feed.stats.connects > 1)

        sampling = anyio.CancelScope()

        async def sampler() -> None:
            with sampling:
                await sample()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sampler)
            start = time.perf_counter()
            await tasks.start(app.run)
            run.ready_at = time.perf_counter() - start
            freeze_startup_heap()  # as `tickd run` does once ready (undone below)
            if seconds is not None:
                await anyio.sleep(seconds)
            else:
                total = sum(s for _, s in schedule.phases)
                with anyio.move_on_after(total + 30):
                    while not settled():
                        await anyio.sleep(0.01)
                    assert run.written is not None
                    run.lag = time.perf_counter() - run.written.phases[-1][2]
                    await anyio.sleep(0.2)  # the order updates of the last fills
                    while not settled():
                        await anyio.sleep(0.05)
            run.seconds = time.perf_counter() - start
            app.stop()  # the ordered shutdown: app.run drains every mailbox and returns
            sampling.cancel()
        gc.unfreeze()  # what this graph leaves behind can be collected again
        stats = feed.stats
        run.trades_banked = app.indicators.mailbox.stats.received
        run.quotes_seen = probe.quotes
        run.quotes_conflated = app.host.mailbox.stats.conflated
        run.quotes_dropped = app.host.mailbox.stats.dropped
        run.frames_dropped = stats.dropped_frames
        run.frames_read = stats.frames + stats.dropped_frames
        run.decode_errors = stats.decode_errors
        run.messages = stats.messages
        run.connects = stats.connects
        run.gaps = stats.gaps
        run.intents = app.host.intents
        engine = app.risk
        run.approved = engine.approved
        run.denied, run.repeated = Counter(engine.denied), app.risk_actor.repeated
        run.decided = engine.approved + sum(run.denied.values()) + run.repeated
        run.submitted = app.broker.stats.submitted if hasattr(app.broker, "stats") else 0
        run.updates_published = app.bus.published["OrderUpdate"]
        run.updates_seen = probe.updates
        for box in [a.mailbox for a in app.actors] + raw:
            _note_high_water(run, box)
    run.updates_seen = probe.updates
    return run


def _note_high_water(run: Run, box: Mailbox[Any]) -> None:
    most = max(box.stats.high_water, run.high_water.get(box.name, (0, 0))[0])
    run.high_water[box.name] = (most, box.capacity)


# --- the scenarios -------------------------------------------------------------------------------


async def sustainable_rate(writer: Writer, steps: Sequence[float], seconds: float) -> float:
    """The highest of ``steps`` (msg/s, rising) at which the graph keeps pace with conflation
    off: the quote strategy sees every quote, nothing is lost, and the last message is handled
    within ``MAX_LAG`` of being written; each step on a fresh graph. Raises if even the first
    step is too much."""
    best = 0.0
    for rate in steps:
        probe = QuoteProbe(SYMBOLS, QUOTE_COST, ORDER_EVERY)
        run = await _run(writer, Schedule(((rate, seconds),)), probe, conflate=False)
        if run.lag > MAX_LAG or run.connects > 1 or run.quotes_seen < run.sent["Quote"]:
            break
        best = rate
    if not best:
        raise RuntimeError(f"not even {steps[0]:g} msg/s is sustained")
    return best


def _buffers_mib(run: Run, frame_bytes: float) -> float:
    """What the graph's buffers held at their fullest: the raw queues' frames (bytes plus
    about 200 B of frame object and stamp each) and the mailboxes' decoded events (about
    300 B each: the struct, its strings' share and the list slot)."""
    size = 0.0
    for name, (most, _) in run.high_water.items():
        size += most * (frame_bytes + 200 if name.endswith(".raw") else 300)
    return size / 2**20


def _high_water_bound(name: str, capacity: int) -> int:
    """A blocking mailbox holds at most its capacity; the strategy host's conflating one holds
    at most its capacity of unkeyed messages (the bank's batches, bars, order updates) plus one
    quote per symbol."""
    return capacity + len(SYMBOLS) if name == "strategies" else capacity


async def overload(quick: bool) -> list[Row]:
    """A burst of 10x the sustainable rate between two phases at that rate (see the module)."""
    steps = (1_000, 1_500, 2_000, 2_500, 3_000, 3_500, 4_000, 5_000)
    step_seconds, burst, calm = (1.5, 3.0, 2.0) if quick else (3.0, 10.0, 3.0)
    with _writer() as writer:
        rate = await sustainable_rate(writer, steps, step_seconds)
        schedule = Schedule(((rate, calm), (10 * rate, burst), (rate, calm)))
        probe = QuoteProbe(SYMBOLS, QUOTE_COST, ORDER_EVERY)
        run = await _run(writer, schedule, probe)
    if run.written is None or len(run.written.phases) < 2:
        raise RuntimeError(f"the writer did not get through the burst: {run.written!r}")
    frames, _ = templates()
    frame_bytes = sum(map(len, frames)) / len(frames)
    buffers = _buffers_mib(run, frame_bytes)
    (_, calm_start, calm_end), (written, burst_start, burst_end) = run.written.phases[:2]
    burst_rate = (written - 1) * FRAME / (burst_end - burst_start)
    before = [rss for t, rss, _, _ in run.samples if calm_start <= t <= calm_end]
    during = [rss for t, rss, _, _ in run.samples if t > calm_end]
    growth = (max(during) - sorted(before)[len(before) // 2]) / 1024
    window = [(t, n) for t, n in run.published if burst_start <= t <= burst_end]
    received = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
    sent = run.sent
    return [
        figure("overload: sustainable rate (quote strategy keeps pace)", rate, "msg/s"),
        figure(
            "overload: written in the burst (measured by the writer)",
            round(burst_rate),
            "msg/s",
            ">=",
            0.9 * 10 * rate,
        ),
        figure("overload: published by the feed during the burst", round(received), "msg/s"),
        figure(
            "overload: connections (a dropped slow client reconnects)",
            run.connects,
            "connections",
            "==",
            1,
        ),
        *(
            figure(
                f"overload: high-water of the {name} mailbox",
                most,
                "messages",
                "<=",
                _high_water_bound(name, capacity),
            )
            for name, (most, capacity) in run.high_water.items()
        ),
        figure(
            "overload: peak RSS growth in and after the burst",
            round(growth, 1),
            "MiB",
            "<=",
            round(buffers + RSS_SLACK, 1),
        ),
        figure("overload: quotes conflated", run.quotes_conflated, "quotes", ">", 0),
        figure(
            "overload: quotes neither seen nor counted as conflated",
            sent["Quote"] - run.quotes_seen - run.quotes_conflated - run.quotes_dropped,
            "quotes",
            "==",
            0,
        ),
        figure(
            "overload: trades lost (sent - banked)",
            sent["Trade"] - run.trades_banked,
            "trades",
            "==",
            0,
        ),
        figure(
            "overload: frames dropped by the feed's raw queue",
            run.frames_dropped,
            "frames",
            "==",
            0,
        ),
        figure(
            "overload: orders lost (intents not decided + approved not at the broker)",
            run.intents - run.decided + run.approved - run.submitted,
            "orders",
            "==",
            0,
        ),
        figure(
            "overload: order updates lost (published - seen)",
            run.updates_published - run.updates_seen,
            "updates",
            "==",
            0,
        ),
    ]


async def soak(seconds: float, warm_up: float, slope_limit: float = SLOPE_LIMIT) -> list[Row]:
    """``seconds`` at ``SOAK_RATE`` with resets every ``DROP_MEAN`` s on average; the
    figures from the samples after ``warm_up``, the RSS slope within ``slope_limit`` kB/min
    (see the module)."""
    schedule = Schedule(((SOAK_RATE, 1.0),), drop=DROP_MEAN, loop=True)
    with _writer() as writer:
        probe = QuoteProbe(SYMBOLS, 0.0, SOAK_ORDER_EVERY)
        run = await _run(writer, schedule, probe, seconds=seconds, every=1.0, trend=SOAK_TREND)
    start = run.samples[0][0]
    after = [s for s in run.samples if s[0] - start >= warm_up]
    times = [(t - start) / 60 for t, _, _, _ in after]
    rss = [float(r) for _, r, _, _ in after]
    slope = _slope(times, rss)  # kB per minute
    third = max(1, len(after) // 3)
    fds = [round(f) for _, _, f, _ in after]
    tasks = [round(n) for _, _, _, n in after]
    busy = run.seconds - run.ready_at
    return [
        figure("soak: duration", round(run.seconds), "s"),
        figure("soak: messages handled", run.messages, "msg"),
        figure(
            "soak: rate achieved (reconnects included)",
            round(run.messages / busy),
            "msg/s",
            ">=",
            0.97 * SOAK_RATE,
        ),
        figure("soak: reconnects", run.connects - 1, "reconnects", ">", 0),
        figure("soak: gaps reported", run.gaps, "gaps"),
        figure("soak: RSS after warm-up, mean", round(statistics.fmean(rss) / 1024, 1), "MiB"),
        figure(
            "soak: |RSS slope| after warm-up", round(abs(slope), 1), "kB/min", "<=", slope_limit
        ),
        figure(
            "soak: fd growth after warm-up", max(fds[-third:]) - max(fds[:third]), "fds", "<=", 0
        ),
        figure(
            "soak: task growth after warm-up",
            max(tasks[-third:]) - max(tasks[:third]),
            "tasks",
            "<=",
            0,
        ),
    ]


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` over ``xs``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def figures(quick: bool) -> list[Row]:
    """Overload, then soak: CI size with ``quick`` (about a minute), else the published size."""
    rows = anyio.run(overload, quick)
    seconds, warm_up, limit = (
        (30.0, 10.0, QUICK_SLOPE_LIMIT) if quick else (600.0, 60.0, SLOPE_LIMIT)
    )
    return rows + anyio.run(soak, seconds, warm_up, limit)


if __name__ == "__main__":  # the frame writer (see the module)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())
