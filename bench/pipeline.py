"""Synthetic Alpaca frames over loopback into the running graph, vs bare and alpaca-py clients.

A server process (``bench/_alpaca_server.py``) speaks Alpaca's msgpack handshake and writes
frames of 10 trades at a fixed rate. In this process, one client at a time connects:

* tickd: the real graph -- ``AlpacaFeed`` (reader, raw queue, decoder, session) -> ``Bus`` ->
  ``IndicatorActor`` (the kernel bank: EMA 12/26, RSI 14, ATR 14 per symbol, one call per batch)
  -> ``Bus`` -> a trivial strategy actor that notes when each snapshot arrives; actors under the
  ``Supervisor``, mailboxes blocking, as in the daemon;
* bare: ``websockets`` + one msgspec decoder, no queue, no actors (the transport's floor);
* alpaca-py: the real ``StockDataStream`` with a no-op handler, default models and
  ``raw_data=True``.

Throughput: each offered rate runs for a fixed time; tickd *sustains* a rate when every message
reaches the bank (no frame dropped by the reader's queue) and the strategy keeps pace (achieved
>= 97 % of offered). alpaca-py cannot drop (it reads only when it is done), so its figure is how
fast it drains frames written as fast as TCP takes them. Latency: the server stamps each trade's
``t`` with the wall clock at the write; the strategy (or the bare client) subtracts it from the
wall clock when it sees the event. Rates and latencies are medians over interleaved rounds.

Event loops: tickd and the bare client run on the loop every ``tickd`` command runs on
(``tickd.daemon.eventloop``: uvloop when installed, which the lock does not), so the latency
ratio compares the graph with the transport on the same loop; alpaca-py always runs on asyncio's
own loop, which is what ``StockDataStream.run()`` gives its users.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import msgspec
import numpy as np
from msgspec import Struct
from websockets.asyncio.client import connect

from bench.harness import Config, Report, Row, benchmark, faster_by
from tickd.codecs.alpaca import AuthRequest, SubscribeRequest, encode_client_message
from tickd.codecs.schema import ChannelSets, Trade
from tickd.daemon import eventloop
from tickd.daemon.actors import Actor, Mailbox, RestartPolicy, Supervisor
from tickd.daemon.bus import Bus
from tickd.daemon.config import Config as DaemonConfig
from tickd.daemon.feeds.alpaca import AlpacaFeed, AlpacaFeedSettings
from tickd.daemon.indicators import IndicatorActor, IndicatorSnapshot
from tickd.daemon.trace_export import make_processor, resource_for
from tickd.daemon.tracing import Tracing
from tickd.strategies.indicators import Bank, Spec

FRAME = 10  # trades per frame
SUSTAINED_GOAL = 500_000
VS_ALPACA_PY = faster_by(7, "alpaca-py")
P50_GOAL, P99_GOAL = 1.3, 2.0
TRACING_COST = 0.05  # throughput lost to default tracing, at most
INDICATORS = (
    Spec("ema", {"timeperiod": 12}),
    Spec("ema", {"timeperiod": 26}),
    Spec("rsi", {"timeperiod": 14}),
    Spec("atr", {"timeperiod": 14}),
)


@dataclass
class Trial:
    messages: int = 0  # reached the bank (tickd) or the handler (peers)
    lost: int = 0
    seconds: float = 0.0  # first message seen to last message handled
    latencies_us: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_us, q)) if self.latencies_us else float("nan")


@contextlib.contextmanager
def _server() -> Iterator[str]:
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._alpaca_server"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        yield f"ws://127.0.0.1:{int(line.split()[1])}/v2/test"
    finally:
        process.terminate()
        process.wait(10)


def _url(base: str, rate: float, frames: int, stamp: bool) -> str:
    # urlencode, not f"{rate:g}": 1e+06 would reach the server as "1e 06"
    return f"{base}?{urlencode({'rate': rate, 'frames': frames, 'stamp': int(stamp)})}"


# --- tickd: the graph -----------------------------------------------------------------------------


class Probe(Actor[IndicatorSnapshot]):
    """The trivial strategy: notes when each snapshot arrives (and its latency when stamped)."""

    def __init__(self, mailbox: Mailbox[IndicatorSnapshot], stamped: bool) -> None:
        super().__init__("probe", mailbox)
        self.stamped = stamped
        self.first_recv = 0
        self.last_ns = 0
        self.latencies_us: list[float] = []

    async def handle(self, batch: list[IndicatorSnapshot]) -> None:
        now = time.time_ns()
        if not self.first_recv:
            self.first_recv = min(s.ts_recv for s in batch)
        if self.stamped:
            self.latencies_us += [(now - s.ts_event) / 1e3 for s in batch]
        self.last_ns = now


async def _tickd(
    url: str,
    symbols: tuple[str, ...],
    bank: Bank,
    expected: int,
    stamped: bool,
    tracing: Tracing | None = None,
):
    bus = Bus()
    indicators = IndicatorActor(
        Mailbox("indicators", 10_000), bank, symbols, bus.publish_many, "trades", tracing=tracing
    )
    bus.subscribe(indicators.mailbox, Trade)
    probe = Probe(Mailbox("probe", 10_000), stamped)
    bus.subscribe(probe.mailbox, IndicatorSnapshot)
    settings = AlpacaFeedSettings(url=url, channels=ChannelSets(trades=symbols))
    feed = AlpacaFeed(settings, "bench-key", "bench-secret", bus.publish_many)
    feed.tracing = tracing
    supervisor = Supervisor(RestartPolicy())
    trial = Trial()
    async with anyio.create_task_group() as tasks:
        await tasks.start(supervisor.supervise, indicators)
        await tasks.start(supervisor.supervise, probe)
        with anyio.fail_after(30):  # a server that refuses the trial: fail, not reconnect forever
            await tasks.start(feed.run)
        with anyio.move_on_after(max(10.0, expected / 50_000)):
            while (
                indicators.mailbox.stats.received < expected
                or len(probe.mailbox)
                or len(indicators.mailbox)
            ):
                if feed.stats.dropped_frames:
                    break
                await anyio.sleep(0.001)
        tasks.cancel_scope.cancel()
    trial.messages = indicators.mailbox.stats.received
    trial.lost = expected - trial.messages
    trial.seconds = (probe.last_ns - probe.first_recv) / 1e9
    trial.latencies_us = probe.latencies_us
    return trial


# --- peers ----------------------------------------------------------------------------------------


class BareTrade(Struct, tag_field="T", tag="t"):
    S: str
    t: dt.datetime
    p: float
    s: int


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def _bare(url: str, symbols: tuple[str, ...], expected: int, stamped: bool) -> Trial:
    decoder = msgspec.msgpack.Decoder(list[BareTrade])
    trial = Trial()
    async with connect(url, max_size=2**24, compression=None) as websocket:
        await websocket.recv()
        await websocket.send(encode_client_message(AuthRequest(key="k", secret="s"), "msgpack"))
        await websocket.recv()
        subscribe = SubscribeRequest(trades=symbols)
        await websocket.send(encode_client_message(subscribe, "msgpack"))
        await websocket.recv()
        first = 0
        latencies = trial.latencies_us
        while trial.messages < expected:
            trades = decoder.decode(await websocket.recv())
            now = time.time_ns()
            first = first or now
            trial.messages += len(trades)
            if stamped:
                sent = trades[0].t - _EPOCH
                micros = (sent.days * 86_400 + sent.seconds) * 1_000_000 + sent.microseconds
                latencies.append(now / 1e3 - micros)
        trial.seconds = (time.time_ns() - first) / 1e9
    return trial


async def _alpaca_py(url: str, symbols: tuple[str, ...], expected: int, raw: bool) -> Trial:
    from alpaca.data.live.stock import StockDataStream

    stream = StockDataStream("bench-key", "bench-secret", raw_data=raw, url_override=url)
    trial = Trial()
    done = asyncio.Event()
    first = 0

    async def handler(_: Any) -> None:
        nonlocal first
        trial.messages += 1
        if trial.messages == 1:
            first = time.time_ns()
        elif trial.messages >= expected:
            trial.seconds = (time.time_ns() - first) / 1e9
            done.set()

    stream.subscribe_trades(handler, *symbols)
    task = asyncio.create_task(stream._run_forever())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), max(30.0, expected / 20_000))
    await stream.stop_ws()
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    trial.lost = expected - trial.messages
    return trial


# --- the benchmark --------------------------------------------------------------------------------


def _symbols() -> tuple[str, ...]:
    from bench.decode import make_trades

    trades = make_trades(np.random.default_rng(0), 400)
    return tuple(sorted({t.symbol for t in trades}))


def _tracing(directory: Path) -> Tracing:
    """The daemon's default tracing (a sample a few times a second, the latency budget, spans
    to the JSON-lines file) writing into ``directory``."""
    settings = DaemonConfig(state_dir=str(directory))
    return Tracing(
        settings.tracing, "bench", make_processor(settings), resource_for(settings.tracing)
    )


def _traced(config: Config, report: Report, symbols: tuple[str, ...], bank: Bank) -> Report:
    """Throughput with tracing on against off: messages per CPU-second of this process (the
    graph and the span exporter's thread) at one sustainable offered rate, the two interleaved.
    CPU, not wall time: at a rate both sustain, wall time only says that both kept up."""
    rate = 100_000 if config.quick else 150_000
    frames = int(rate * (0.5 if config.quick else 3.0) / FRAME)
    rounds = 1 if config.quick else 7
    per_cpu: dict[bool, list[float]] = {False: [], True: []}
    traced = {"spans": 0, "sampled": 0, "feed passes stamped": 0}
    with _server() as base, tempfile.TemporaryDirectory() as scratch:
        url = _url(base, rate, frames, stamp=False)
        for _ in range(rounds):
            for on in (False, True):
                tracing = _tracing(Path(scratch)) if on else None
                cpu = time.process_time()
                trial = eventloop.run(_tickd, url, symbols, bank, frames * FRAME, False, tracing)
                if tracing is not None:
                    tracing.shutdown()  # its thread's export is part of the cost
                    traced["spans"] += tracing.spans
                    traced["sampled"] += tracing.sampled
                    traced["feed passes stamped"] += tracing.stages["decode"].count
                cpu = time.process_time() - cpu
                if trial.lost:
                    report.notes.append(f"tracing {'on' if on else 'off'}: {trial.lost} lost")
                per_cpu[on].append(trial.messages / cpu)
    off, on = statistics.median(per_cpu[False]), statistics.median(per_cpu[True])
    report.add(Row("feed->bank throughput, tracing off", round(off), "msg/CPU-s"))
    # Paired, as every peer ratio here: the median of each round's on/off.
    ratio = statistics.median(a / b for a, b in zip(per_cpu[True], per_cpu[False], strict=True))
    report.add(
        Row(
            "feed->bank throughput, default tracing on",
            round(on),
            "msg/CPU-s",
            "tracing off",
            round(off),
            round(ratio, 3),
            f">= {1 - TRACING_COST:.2f}x tracing off",
            ratio >= 1 - TRACING_COST,
        )
    )
    report.notes.append(
        f"offered {rate:,} msg/s in frames of {FRAME}, {rounds} rounds; with tracing on: "
        + ", ".join(f"{v} {k}" for k, v in traced.items())
    )
    return report


@benchmark("pipeline", "Alpaca frames over loopback -> feed -> bank -> strategy; vs alpaca-py")
def run(config: Config) -> Report:
    report = Report(packages=("websockets", "msgspec", "numba", "alpaca-py", "anyio", "uvloop"))
    symbols = _symbols()
    bank = Bank(INDICATORS, len(symbols))
    if config.tracing:
        return _traced(config, report, symbols, bank)
    seconds = 0.4 if config.quick else 2.0
    rounds = 1 if config.quick else 3
    steps = (100, 150, 200, 250, 300, 350, 400, 450, 500, 650, 800, 900, 1000, 1250, 1500)
    offered = (100_000,) if config.quick else tuple(k * 1_000 for k in steps)
    alpaca_frames = {False: 400 if config.quick else 4_000, True: 800 if config.quick else 8_000}
    bare_frames = 4_000 if config.quick else 40_000
    with _server() as base:
        # Throughput: tickd at offered rates, alpaca-py and bare draining a burst.
        sustained: list[float] = []
        alpaca_rates: dict[bool, list[float]] = {False: [], True: []}
        bare_rates: list[float] = []
        for _ in range(rounds):
            best = 0.0
            for rate in offered:
                frames = int(rate * seconds / FRAME)
                url = _url(base, rate, frames, stamp=False)
                trial = eventloop.run(_tickd, url, symbols, bank, frames * FRAME, False)
                ok = trial.lost == 0 and trial.rate >= 0.97 * rate
                report.notes.append(
                    f"tickd offered {rate:,} msg/s: {trial.rate:,.0f} achieved, "
                    f"{trial.lost} lost -> {'sustained' if ok else 'not sustained'}"
                )
                if not ok:
                    break
                best = rate
            sustained.append(best)
            for raw, frames in alpaca_frames.items():  # about a second each
                url = _url(base, 0, frames, stamp=False)
                peer = anyio.run(_alpaca_py, url, symbols, frames * FRAME, raw)
                alpaca_rates[raw].append(peer.rate)
            url = _url(base, 0, bare_frames, stamp=False)
            bare_rates.append(eventloop.run(_bare, url, symbols, bare_frames * FRAME, False).rate)
        tickd_rate = statistics.median(sustained)
        alpaca_default = statistics.median(alpaca_rates[False])
        ratio = tickd_rate / alpaca_default if alpaca_default else 0.0
        report.add(
            Row(
                "sustained, zero loss (feed->bank->strategy)",
                tickd_rate,
                "msg/s",
                "alpaca-py",
                round(alpaca_default),
                round(ratio, 2),
                f">= {SUSTAINED_GOAL:,} msg/s and {VS_ALPACA_PY.text}",
                tickd_rate >= SUSTAINED_GOAL and VS_ALPACA_PY.met(ratio),
            )
        )
        raw_rate = statistics.median(alpaca_rates[True])
        report.add(Row("alpaca-py raw_data=True, drained", round(raw_rate), "msg/s"))
        report.add(
            Row("bare websockets+msgspec, drained", round(statistics.median(bare_rates)), "msg/s")
        )

        # Latency at fixed rates, tickd and bare interleaved.
        for rate in (10_000, 50_000):
            frames = int(rate * (1.0 if config.quick else 3.0) / FRAME)
            url = _url(base, rate, frames, stamp=True)
            ours: list[Trial] = []
            bare: list[Trial] = []
            for _ in range(rounds):
                ours.append(eventloop.run(_tickd, url, symbols, bank, frames * FRAME, True))
                bare.append(eventloop.run(_bare, url, symbols, frames * FRAME, True))
            for q, goal in ((50, P50_GOAL), (99, P99_GOAL)):
                value = statistics.median(t.percentile(q) for t in ours)
                peer = statistics.median(t.percentile(q) for t in bare)
                paired = statistics.median(
                    a.percentile(q) / b.percentile(q) for a, b in zip(ours, bare, strict=True)
                )
                report.add(
                    Row(
                        f"wire->strategy latency p{q} at {rate:,} msg/s",
                        round(value, 1),
                        "us",
                        "bare websockets+msgspec",
                        round(peer, 1),
                        round(paired, 2),
                        f"<= {goal:g}x bare websockets+msgspec",
                        paired <= goal,
                    )
                )
            lost = sum(t.lost for t in ours)
            report.notes.append(f"latency runs at {rate:,} msg/s: {lost} messages lost")
    return report
