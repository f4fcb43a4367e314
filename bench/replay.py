"""A 1M-trade tape replayed through decode -> bank -> ema_cross -> risk -> SimBroker, vs
NautilusTrader's ``BacktestEngine`` with its bundled ``EMACross`` on the same trades.

The tape: the synthetic market's equities (5 symbols, trades and the minute bars Alpaca sends
with them, no quotes, news or halts) as Alpaca stock-stream msgpack frames of 100 messages, one tape
record per frame stamped when its last message would arrive. It is built once and cached (see
:func:`cache_dir`) with the same trades as an ``.npz`` for the peer.

* tickd ``replay()``: ``tickd.daemon.replay.replay([tape], config)``, ``ema_cross`` (fast 10,
  slow 20, 10 shares, shorts allowed) on every symbol, the simulated broker; events/s from its
  summary (events = trades + bars published; the engine's own wall clock).
* tickd by hand: the same stages driven the way ``tests/e2e/test_trading_replay.py`` does
  (``App(feeds=False)``, ``AlpacaDecoder.decode``, ``bus.publish_many``, ``drained()`` per frame),
  frames from memory: what the stages cost without the engine's tape reading and captures, and
  where the time goes (decode, each actor's ``handle``, the rest: bus, mailboxes, scheduling).
* NautilusTrader (``bench/_nautilus_peer.py`` in ``.venv-nautilus``): one ``EMACross`` per
  symbol on 1-minute bars it aggregates from the trade ticks; only ``engine.run()`` is timed.

Each round runs every candidate once (the starting one rotates); values are medians over the
rounds and the ratio is the median of the per-round ratios, as the harness does. A sample is a
whole replay (seconds), so a run has at most 5 rounds (3 with ``--quick``).
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np
import structlog

from bench.harness import Config, Report, Row, benchmark, faster_by
from tickd.codecs.alpaca import AlpacaDecoder
from tickd.codecs.schema import Bar, Trade
from tickd.codecs.synthetic import MarketConfig, SyntheticMarket, alpaca_frames, available_at
from tickd.daemon import config as daemon_config
from tickd.daemon import eventloop

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".venv-nautilus"
PEER_LOCK = ROOT / "bench" / "nautilus.lock"
PEER_SCRIPT = ROOT / "bench" / "_nautilus_peer.py"
PEER = "NautilusTrader"

FULL_TRADES, QUICK_TRADES = 1_000_000, 50_000
FRAME = 100  # messages per frame
SOURCE = "alpaca.stocks"
EVENTS_GOAL = 1_000_000  # events/s on one core
VS_PEER = faster_by(5, PEER)
MARKET = MarketConfig(
    crypto=(),
    seed=20240304,
    trade_rate=1.7,  # per symbol per second: ~100 trades per minute bar
    quote_rate=0.0,
    news_rate=0.0,
    halt_probability=0.0,
    burst_probability=0.0,
)
SYMBOLS = tuple(symbol for symbol, _ in MARKET.equities)
STRATEGY = {"fast": 10, "slow": 20, "qty": 10, "allow_short": True}
# msgpack, what tickd's Alpaca feeds speak and so record (JSON took the lead on the AMD EPYC while
# bar frames, whose whole-second times come in msgpack's 4-byte form, went the careful way).
ENCODING = "msgpack"
_TAPE_VERSION = "1"  # bump when the tape's making changes in a way the key below misses


# --- the tape ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tape:
    """The cached inputs: the tape (``tape``), its frames (``frames``, an ``.npz`` of ``data``,
    ``offsets``, ``ts``) and the trades for the peer (``trades``)."""

    tape: Path
    frames: Path
    trades: Path
    n_trades: int
    n_bars: int
    n_frames: int


def cache_dir() -> Path:
    """``$TICKD_BENCH_CACHE``, else ``~/.cache/tickd-bench``: a tape of 1M trades is ~120 MB
    and takes ~30 s to make, so it is made once per version of the synthetic market."""
    given = os.environ.get("TICKD_BENCH_CACHE")
    return Path(given) if given else Path.home() / ".cache" / "tickd-bench"


def _key(n_trades: int) -> str:
    """Changes with anything that changes the tape's bytes: the market, the generator's code,
    the schema and the encoder (the order of a message's keys is the schema's)."""
    h = hashlib.blake2b(digest_size=6)
    h.update(f"{_TAPE_VERSION} {n_trades} {FRAME} {ENCODING} {MARKET!r}".encode())
    codecs = ROOT / "codecs"
    for name in ("synthetic/market.py", "synthetic/frames.py", "schema.py", "alpaca.py"):
        h.update((codecs / name).read_bytes())
    return f"replay-{n_trades}-{h.hexdigest()}"


def build_tape(n_trades: int, directory: Path | None = None) -> Tape:
    """The tape of the first ``n_trades`` trades of :data:`MARKET` (cached)."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / _key(n_trades)
    tape = Tape(
        tape=base.with_suffix(".tape"),
        frames=base.with_suffix(".frames.npz"),
        trades=base.with_suffix(".trades.npz"),
        n_trades=n_trades,
        n_bars=0,
        n_frames=0,
    )
    meta = base.with_suffix(".json")
    if not (meta.exists() and tape.frames.exists() and tape.trades.exists()):
        meta.write_text(json.dumps(_make(tape)))
    return Tape(**{**tape.__dict__, **json.loads(meta.read_text())})


def _make(tape: Tape) -> dict[str, int]:
    """The frames and the peer's trades; the tape itself is written from the frames."""
    events: list[Any] = []
    trades = 0
    for event in SyntheticMarket(MARKET).iter_events():
        if type(event) is Trade:
            if trades == tape.n_trades:
                break
            trades += 1
        events.append(event)
    # The bars of a minute go out when it ends: drop those whose minute is not over yet.
    end = available_at(events[-1])
    events = [e for e in events if available_at(e) <= end]
    chunks = [events[i : i + FRAME] for i in range(0, len(events), FRAME)]
    frames = [alpaca_frames(chunk, "stocks", ENCODING, batch=FRAME)[0] for chunk in chunks]
    np.savez(
        tape.frames,
        data=np.frombuffer(b"".join(frames), dtype=np.uint8),
        offsets=np.cumsum([0, *map(len, frames)], dtype=np.int64),
        ts=np.array([max(map(available_at, chunk)) for chunk in chunks], dtype=np.int64),
    )
    kept = [e for e in events if type(e) is Trade]
    index = {symbol: i for i, symbol in enumerate(SYMBOLS)}
    np.savez(
        tape.trades,
        ts=np.array([t.ts_event for t in kept], dtype=np.int64),
        symbol=np.array([index[t.symbol] for t in kept], dtype=np.int16),
        price=np.array([t.price for t in kept], dtype=np.float64),
        size=np.array([t.size for t in kept], dtype=np.float64),
        trade_id=np.array([t.trade_id for t in kept], dtype=np.int64),
        symbols=np.array(SYMBOLS),
    )
    return {
        "n_trades": len(kept),
        "n_bars": sum(type(e) is Bar for e in events),
        "n_frames": len(frames),
    }


def write_tape(tape: Tape, frames: list[tuple[int, bytes]]) -> None:
    """The frames as a tape (``tickd.codecs.tape``), one record per frame, if not there yet."""
    from tickd.codecs.tape import TapeWriter

    if tape.tape.exists():
        return
    partial = tape.tape.with_suffix(".partial")
    with TapeWriter(partial, created_ns=frames[0][0], meta={"bench": "replay"}) as writer:
        for ts, frame in frames:
            writer.write(ts, SOURCE, frame)
    partial.replace(tape.tape)


def _frames(tape: Tape) -> list[tuple[int, bytes]]:
    with np.load(tape.frames) as data:
        blob, offsets, stamps = data["data"].tobytes(), data["offsets"], data["ts"]
    return [
        (int(ts), blob[start:end])
        for ts, start, end in zip(stamps, offsets[:-1], offsets[1:], strict=True)
    ]


# --- tickd ---------------------------------------------------------------------------------------


def trading_config(state: str) -> daemon_config.Config:
    """ema_cross on every symbol, the simulated broker, risk limits out of the way."""
    return msgspec.convert(
        {
            "state_dir": state,
            "symbols": {"stocks": list(SYMBOLS)},
            "risk": {
                "trading_hours": "always",
                "max_orders_per_minute": 1_000_000,
                "max_order_notional": 1e12,
                "max_gross_exposure": 1e12,
                "max_daily_loss": 1e12,
            },
            "broker": {"kind": "sim", "slippage_bps": 1.0, "fee_per_share": 0.005},
            "strategies": [{"kind": "ema_cross", "params": STRATEGY}],
        },
        daemon_config.Config,
    )


@dataclass
class Run:
    """One replay: how many events in how long, and what it decided (to check the runs agree)."""

    events: int
    seconds: float
    intents: int
    orders: int
    fills: int
    digest: str = ""
    stages: dict[str, float] | None = None  # seconds per stage (by hand only)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def replay_engine(tape: Tape) -> Run:
    """``tickd.daemon.replay.replay`` on the tape."""
    from tickd.daemon.replay import replay

    with tempfile.TemporaryDirectory(prefix="tickd-bench-") as state:
        summary = eventloop.run(replay, [tape.tape], trading_config(state))
    if summary.decode_errors or summary.unknown:
        raise AssertionError(f"replay decoded with errors: {summary}")
    return Run(
        summary.events,
        summary.elapsed,
        summary.intents,
        summary.orders,
        summary.fills,
        summary.digest,
    )


async def _by_hand(frames: list[tuple[int, bytes]], state: str) -> Run:
    from tickd.codecs.schema import OrderUpdate
    from tickd.daemon.actors import Mailbox
    from tickd.daemon.app import App
    from tickd.daemon.clock import ManualClock

    clock = ManualClock(frames[0][0])
    app = App(trading_config(state), clock=clock, feeds=False)
    updates: Mailbox[Any] = Mailbox("bench", 10_000_000)
    app.bus.subscribe(updates, OrderUpdate)
    decode = AlpacaDecoder("stocks", ENCODING).decode
    publish, drained = app.bus.publish_many, app.drained
    events = decode_ns = 0
    async with anyio.create_task_group() as tasks:
        await tasks.start(app.run)
        started = time.perf_counter_ns()
        for ts, frame in frames:
            t0 = time.perf_counter_ns()
            messages = decode(frame, ts).messages
            decode_ns += time.perf_counter_ns() - t0
            events += len(messages)
            clock.set(max(clock.now_ns(), ts))
            await publish(messages)
            await drained()
        elapsed = time.perf_counter_ns() - started
        app.stop()
    fills = 0
    while len(updates):
        fills += sum(u.event == "fill" for u in await updates.receive_batch(10_000_000))
    stages = {"decode": decode_ns / 1e9}
    stages |= {a.name: a.handle_time.total_ns / 1e9 for a in app.actors}
    stages["bus, mailboxes, drained(), scheduling"] = elapsed / 1e9 - sum(stages.values())
    return Run(events, elapsed / 1e9, app.host.intents, app.broker_actor.sent, fills, stages=stages)


def by_hand(frames: list[tuple[int, bytes]]) -> Run:
    """The stages driven by hand, lockstep per frame (frames already in memory)."""
    with tempfile.TemporaryDirectory(prefix="tickd-bench-") as state:
        return eventloop.run(_by_hand, frames, state)


# --- the peer ------------------------------------------------------------------------------------


def _peer_python() -> Path:
    return PEER_VENV / "bin" / "python"


def install_peer() -> None:
    """Make ``.venv-nautilus`` from ``bench/nautilus.lock`` (hashes required; ~700 MB)."""
    if not _peer_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(_peer_python()), "-m", "pip", "install", "--require-hashes", "--no-deps"]
    subprocess.run([*pip, "-r", str(PEER_LOCK)], check=True)


def peer_run(tape: Tape) -> Run:
    """NautilusTrader on the tape's trades, in its own venv; raises if it did not replay all."""
    result = subprocess.run(
        [str(_peer_python()), str(PEER_SCRIPT), str(tape.trades)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1_800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the NautilusTrader peer failed:\n{result.stderr[-2000:]}")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    if out["trades"] != tape.n_trades or out["iterations"] != tape.n_trades or not out["bars"]:
        raise AssertionError(f"NautilusTrader did not replay every trade: {out}")
    return Run(out["trades"], out["seconds"], out["orders"], out["orders"], out["fills"])


def _peer_version() -> str:
    result = subprocess.run(
        [str(_peer_python()), "-c", "import nautilus_trader as n; print(n.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "?"


# --- the benchmark -------------------------------------------------------------------------------


def _quiet() -> Callable[[], None]:
    """The graph logs every order at info level; the summary says what happened."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return lambda: structlog.configure(**before)


def _rounds(candidates: dict[str, Callable[[], Run]], rounds: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            runs[name].append(candidates[name]())
    return runs


def _check(name: str, runs: list[Run], expected_events: int) -> None:
    first = runs[0]
    if first.events != expected_events:
        raise AssertionError(f"{name}: {first.events} events, the tape has {expected_events}")
    if not (first.orders and first.fills):
        raise AssertionError(f"{name}: no orders or fills: {first}")
    for run in runs[1:]:
        same = (run.intents, run.orders, run.fills, run.digest)
        if same != (first.intents, first.orders, first.fills, first.digest):
            raise AssertionError(f"{name}: runs disagree: {first} vs {run}")


def _engine_missing() -> str | None:
    """None when ``tickd.daemon.replay`` (and so ``tickd.codecs.tape``) imports, else why not."""
    try:
        importlib.import_module("tickd.daemon.replay")
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@benchmark("replay", "1M-trade tape -> decode -> bank -> ema_cross -> SimBroker; vs NautilusTrader")
def run(config: Config) -> Report:
    report = Report(packages=("msgspec", "numba", "numpy", "anyio", "uvloop"))
    n_trades = QUICK_TRADES if config.quick else FULL_TRADES
    rounds = max(1, min(config.rounds, 3 if config.quick else 5))
    tape = build_tape(n_trades)
    frames = _frames(tape)
    expected = tape.n_trades + tape.n_bars
    label = f"{tape.n_trades:,} trades + {tape.n_bars:,} bars, {tape.n_frames:,} frames"

    candidates: dict[str, Callable[[], Run]] = {}
    missing = _engine_missing()
    if missing is None:
        write_tape(tape, frames)
        candidates["replay"] = lambda: replay_engine(tape)
    else:
        report.notes.append(f"tickd.daemon.replay not usable ({missing}): by hand only")
    candidates["by hand"] = lambda: by_hand(frames)
    if _peer_python().exists():
        candidates[PEER] = lambda: peer_run(tape)
        report.notes.append(f"{PEER} {_peer_version()} in {PEER_VENV.name}")
    else:
        report.notes.append(
            f"{PEER} skipped: no {PEER_VENV.name} (make it with "
            "`python -m bench replay --peer-install`)"
        )

    restore = _quiet()
    try:
        warm = frames[: max(1, len(frames) // 20)]  # kernels loaded, strategy scan compiled
        by_hand(warm)
        runs = _rounds(candidates, rounds)
    finally:
        restore()
    for name, done in runs.items():
        _check(name, done, tape.n_trades if name == PEER else expected)

    ours = "replay" if "replay" in runs else "by hand"
    for name in [n for n in ("replay", "by hand") if n in runs]:
        rate = statistics.median(r.rate for r in runs[name])
        what = "replay()" if name == "replay" else "stages by hand (frames in memory)"
        goal = name == ours
        report.add(
            Row(
                f"{what}: {label}",
                float(round(rate)),
                "events/s",
                target=f">= {EVENTS_GOAL:,} events/s" if goal else None,
                meets_target=rate >= EVENTS_GOAL if goal else None,
            )
        )
    if PEER in runs:
        trades = [tape.n_trades / r.seconds for r in runs[ours]]
        theirs = [r.rate for r in runs[PEER]]
        ratio = statistics.median(a / b for a, b in zip(trades, theirs, strict=True))
        report.add(
            Row(
                f"{ours} trades/s, {tape.n_trades:,} trades",
                float(round(statistics.median(trades))),
                "trades/s",
                PEER,
                float(round(statistics.median(theirs))),
                round(ratio, 2),
                VS_PEER.text,
                VS_PEER.met(ratio),
            )
        )
    _notes(report, runs, rounds)
    return report


def _notes(report: Report, runs: dict[str, list[Run]], rounds: int) -> None:
    for name, done in runs.items():
        first = done[0]
        seconds = ", ".join(f"{r.seconds:.2f}" for r in done)
        intents = "" if name == PEER else f"{first.intents} intents, "
        report.notes.append(
            f"{name}: {intents}{first.orders} orders, {first.fills} fills "
            f"(same in every run); seconds per run: {seconds}"
        )
    if "by hand" in runs:
        middle = sorted(runs["by hand"], key=lambda r: r.seconds)[len(runs["by hand"]) // 2]
        assert middle.stages is not None
        parts = ", ".join(
            f"{stage} {s:.2f} s ({s / middle.seconds:.0%}, {s / middle.events * 1e9:,.0f} ns/event)"
            for stage, s in middle.stages.items()
        )
        report.notes.append(f"by hand, where the time goes (median run): {parts}")
    report.notes += [
        f"{rounds} rounds, candidates interleaved; values are medians, the ratio the median of "
        "per-round ratios. Events = trades + the minute bars published; tickd's trades/s is the "
        "tape's trades over the same wall time.",
        "tickd: ema_cross(10, 20, 10 shares, shorts) on 5 symbols, risk limits out of the way, "
        "SimBroker (1 bp slippage, $0.005/share); its bank takes Alpaca's minute bars (from the "
        "tape); the trades are decoded and published but no actor subscribes to them.",
        f"{PEER}: BacktestEngine, EMACross(10, 20, 10 shares) per symbol on 1-minute bars it "
        "aggregates from the TradeTicks, netting margin venue, logging at ERROR; only "
        "engine.run() is timed (not building the ticks nor add_data), as its own benchmarks do.",
    ]
