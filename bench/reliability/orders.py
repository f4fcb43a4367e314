"""Orders under faults: ambiguous submits, a daemon killed with open orders, the kill switch.

Every scenario runs the real parts over loopback: the fake exchange's trading API (its matching
engine and chaos), alpaca-py inside :class:`~tickd.daemon.broker.alpaca.AlpacaBroker`, the broker
and risk actors with the portfolio, the ``trade_updates`` feed, and for the restart a real
``tickd run`` subprocess killed with SIGKILL. What is counted comes from the venue's own book.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import requests
import structlog.testing

from bench.harness import Row
from bench.reliability.figures import figure, percentile
from tickd.codecs.schema import OrderUpdate
from tickd.daemon.actors import Mailbox
from tickd.daemon.broker.actor import BrokerActor
from tickd.daemon.broker.alpaca import AlpacaBroker, AlpacaBrokerSettings
from tickd.daemon.broker.base import OrderRequest
from tickd.daemon.broker.ids import client_order_id
from tickd.daemon.clock import LiveClock
from tickd.daemon.config import RiskConfig
from tickd.daemon.control import ControlWatcher, write_command
from tickd.daemon.fake_exchange.chaos import ChaosSettings
from tickd.daemon.fake_exchange.matching import MatchingEngine
from tickd.daemon.fake_exchange.server import FakeExchange, FakeExchangeSettings
from tickd.daemon.feeds.base import FeedGap
from tickd.daemon.feeds.trade_updates import TradeUpdatesFeed, TradeUpdatesSettings
from tickd.daemon.portfolio import Portfolio
from tickd.daemon.risk import RiskActor, RiskEngine, RiskState
from tickd.strategies.base import OrderIntent

__all__ = [
    "AmbiguousRun",
    "ambiguous_submits",
    "figures",
    "kill_switch",
    "restart_trials",
    "venue_positions",
]

KEY: Final = "PKRELIABILITY0001"
SECRET: Final = "reliability-secret"
SALT: Final = "reliability-0123456789abcdef"
STRATEGY: Final = "chaos"
SYMBOLS: Final = ("AAPL", "MSFT")
# Periods with no common factor: every kind of fault, at most one per submission, about half of
# all submissions meeting one (the engine checks them in this order).
SUBMIT_FAULTS: Final = {
    "submit_fail_every": 5,  # 500, nothing kept
    "submit_lost_every": 7,  # never answered, nothing kept
    "submit_throttle_every": 9,  # 429, nothing kept
    "submit_fail_kept_every": 11,  # 500, kept
    "submit_timeout_every": 13,  # never answered, kept
}
_NO_LIMITS: Final = RiskConfig(
    max_position=1e9,
    max_order_notional=1e12,
    max_gross_exposure=1e15,
    max_orders_per_minute=10**9,
    max_daily_loss=1e15,
    trading_hours="always",
)


def venue_positions(engine: MatchingEngine) -> dict[str, Decimal]:
    """Signed quantity per symbol, as the venue books it."""
    return {p.symbol: p.qty for p in engine.positions() if p.qty}


def mismatches(local: dict[str, Decimal], venue: dict[str, Decimal]) -> int:
    """Symbols whose signed quantity differs between two views (flat counts as absent)."""
    return sum(1 for s in set(local) | set(venue) if local.get(s, 0) != venue.get(s, 0))


# --- 1. ambiguous submits -------------------------------------------------------------------------


@dataclass
class AmbiguousRun:
    intents: int
    faults: dict[str, int]  # submission attempts that met a fault, by kind
    venue_orders: int
    filled: int  # of those, filled (each moved a position both sides must agree on)
    foreign: int  # venue orders under a client order id no intent produced
    unlike: int  # venue orders whose symbol, side, type or quantity differ from their intent
    off_target: int  # symbols whose venue position is not the sum of the intents
    refused_repeats: int  # the venue's 422 "client_order_id must be unique" (it guarding us)
    unresolved: int  # intents the daemon neither placed nor saw refused
    missing: int  # intents with no order at the venue
    stream_mismatches: int  # positions the stream alone got wrong, before the final reconcile
    corrected: list[str]  # what the final reconciliation found different (and corrected)
    broker: dict[str, int]  # the adapter's counters
    seconds: float

    def rows(self) -> list[Row]:
        faults = sum(self.faults.values())
        name = "ambiguous submits"
        return [
            figure(
                f"{name}: submission attempts that met a fault",
                faults,
                "attempts",
                ">=",
                1000 if self.intents >= 1000 else 100,
            ),
            figure(f"{name}: intents", self.intents, "intents"),
            figure(f"{name}: venue orders no intent produced", self.foreign, "orders", "==", 0),
            figure(f"{name}: venue orders unlike their intent", self.unlike, "orders", "==", 0),
            figure(
                f"{name}: positions other than the intents' sum",
                self.off_target,
                "symbols",
                "==",
                0,
            ),
            figure(
                f"{name}: repeated client order ids the venue refused (422)",
                self.refused_repeats,
                "refusals",
            ),
            figure(f"{name}: intents with an unresolved fate", self.unresolved, "intents", "==", 0),
            figure(f"{name}: intents missing at the venue", self.missing, "intents", "==", 0),
            figure(
                f"{name}: position mismatches from the stream alone",
                self.stream_mismatches,
                "symbols",
                "==",
                0,
            ),
            figure(
                f"{name}: differences the final reconciliation corrected",
                len(self.corrected),
                "differences",
                "==",
                0,
            ),
            figure(f"{name}: wall time", round(self.seconds, 1), "s"),
        ]


def _intents(count: int, seed: int) -> list[OrderIntent]:
    rng = random.Random(seed)
    return [
        OrderIntent(
            strategy=STRATEGY,
            symbol=rng.choice(SYMBOLS),
            side=rng.choice(("buy", "sell")),
            qty=Decimal(rng.randint(1, 3)),
            event_id=f"event-{seed}-{i}",
            ts_event=i,
        )
        for i in range(count)
    ]


class _Rig:
    """The daemon's order path against an in-process fake exchange: risk and its actor, the
    broker actor around alpaca-py, the ``trade_updates`` feed into the portfolio. The actors'
    ``handle`` is called in turn by the scenario (what their mailboxes would do, one batch at
    a time), so a scenario knows when a batch is done."""

    def __init__(
        self,
        exchange: FakeExchange,
        urls: dict[str, str],
        timeout: float,
        workers: int,
        state_dir: Path | None,
    ) -> None:
        self.exchange = exchange
        self.clock = LiveClock()
        self.portfolio = Portfolio()
        report = None if state_dir is None else state_dir / "risk.json"
        self.risk = RiskEngine(_NO_LIMITS, self.portfolio, SYMBOLS, (), self.clock, report)
        self.approved: list[OrderRequest] = []
        self.risk_actor = RiskActor(Mailbox("risk", 64), self.risk, SALT, self._to_broker)
        settings = AlpacaBrokerSettings(
            url_override=urls["trading_url"],
            timeout=timeout,
            retries=8,
            retry_backoff=0.01,
            rate_per_minute=10**7,
            workers=workers,
        )
        self.broker = AlpacaBroker(KEY, SECRET, settings, clock=self.clock)
        self.actor = BrokerActor(
            Mailbox("broker", 64), self.broker, self.risk, self._publish, self.clock
        )
        self.feed = TradeUpdatesFeed(
            TradeUpdatesSettings(url=urls["trading_stream_url"]),
            KEY,
            SECRET,
            self._publish,
            self.clock,
            random.Random(1),
        )

    async def _to_broker(self, items: list[Any]) -> None:
        self.approved.extend(items)

    async def _publish(self, items: list[Any]) -> None:
        updates = [i for i in items if type(i) is OrderUpdate]
        if updates:
            await self.risk_actor.handle(updates)
        gaps = [i for i in items if type(i) is FeedGap]
        if gaps:
            await self.actor.handle(gaps)

    async def decide(self, intents: list[OrderIntent]) -> list[OrderRequest]:
        """Risk judges the intents; the broker actor submits what it approved (one batch)."""
        await self.risk_actor.handle(intents)
        requests, self.approved[:] = list(self.approved), []
        await self.actor.handle(requests)
        return requests

    async def settle(self) -> int:
        """Wait (5 s at most) for the stream to bring the venue's positions; the symbols that
        still differ."""
        with anyio.move_on_after(5):
            while _local(self.portfolio) != venue_positions(self.exchange.engine):
                await anyio.sleep(0.02)
        return mismatches(_local(self.portfolio), venue_positions(self.exchange.engine))


@asynccontextmanager
async def _rig(
    seed: int, *, timeout: float = 0.15, workers: int = 8, state_dir: Path | None = None
) -> AsyncIterator[_Rig]:
    exchange = FakeExchange(
        FakeExchangeSettings(
            key=KEY,
            secret=SECRET,
            symbols=SYMBOLS,
            speed=1.0,
            seed=seed,
            chaos=ChaosSettings(seed=seed),
        )
    )
    async with anyio.create_task_group() as tasks:
        urls = await tasks.start(exchange.run)
        rig = _Rig(exchange, urls, timeout, workers, state_dir)
        await tasks.start(rig.feed.run)
        # The market's latest trades (its history, made at start) to the venue and to risk: a
        # price for every symbol at once, so market orders fill when submitted.
        trades = [exchange.market.latest_trade(s) for s in SYMBOLS]
        exchange.engine.on_market(trades)
        for trade in trades:
            assert trade is not None
            rig.portfolio.mark(trade.symbol, trade.price)
        await rig.actor.on_start()
        yield rig
        tasks.cancel_scope.cancel()


async def ambiguous_submits(
    intents: int, *, batch: int = 8, timeout: float = 0.15, seed: int = 1
) -> AmbiguousRun:
    """``intents`` market orders through risk and the broker actor, ``batch`` at a time, while
    the venue mixes every kind of ambiguous answer into its submissions (:data:`SUBMIT_FAULTS`).
    ``timeout`` is the adapter's: each unanswered submission costs that long."""
    started = anyio.current_time()
    wanted = _intents(intents, seed)
    with structlog.testing.capture_logs() as logs:
        async with _rig(seed, timeout=timeout, workers=batch) as rig:
            exchange, actor = rig.exchange, rig.actor
            exchange.chaos.update(dict(SUBMIT_FAULTS))
            for at in range(0, len(wanted), batch):
                await rig.decide(list(wanted[at : at + batch]))
            exchange.chaos.update(dict.fromkeys(SUBMIT_FAULTS, 0))
            stream_mismatches = await rig.settle()
            await actor.reconcile("the run is over")
            corrected = list(actor.differences)
            orders = exchange.engine.orders()
            held = venue_positions(exchange.engine)
    by_coid = {_coid(i): i for i in wanted}
    intended: dict[str, Decimal] = {}
    for intent in wanted:
        intended[intent.symbol] = intended.get(intent.symbol, Decimal(0)) + intent.signed_qty
    stats = rig.broker.stats
    return AmbiguousRun(
        intents=intents,
        faults=dict(exchange.chaos.injected),
        venue_orders=len(orders),
        filled=sum(1 for o in orders if o.status == "filled"),
        foreign=sum(1 for o in orders if o.client_order_id not in by_coid),
        unlike=sum(
            1
            for o in orders
            if (i := by_coid.get(o.client_order_id)) is not None
            and (o.symbol, o.side, o.order_type, o.qty) != (i.symbol, i.side, i.type, i.qty)
        ),
        off_target=mismatches({s: q for s, q in intended.items() if q}, held),
        refused_repeats=sum(
            1 for e in logs if e["event"] == "order_submit_failed" and e.get("kind") == "duplicate"
        ),
        unresolved=intents - actor.sent - actor.failed["rejected"],
        missing=len(set(by_coid) - {o.client_order_id for o in orders}),
        stream_mismatches=stream_mismatches,
        corrected=corrected,
        broker={
            "timeouts": stats.timeouts,
            "retries": stats.retries,
            "found by client order id": stats.duplicates_resolved,
            "rejected": stats.rejected,
            "unavailable": stats.unavailable,
        },
        seconds=anyio.current_time() - started,
    )


# --- 2. kill -9 of the daemon with orders resting at the venue, then a restart -----------------


@dataclass
class RestartRun:
    trials: int
    ready_seconds: list[float]  # spawn of the restarted daemon -> its ``daemon_ready``
    kills_with_open_orders: int  # kills while orders of the daemon rested at the venue
    kills_in_flight: int  # ... and while a submission the venue kept was still unanswered
    open_at_kills: int  # orders open at the venue right after the kills
    restored: int  # of those, still open at the restart and taken as working by the daemon
    not_restored: int  # open at the venue at the restart, not working in the daemon (target 0)
    phantoms: int  # working in the restarted daemon, not open at the venue at the kill (0)
    restored_filled: int  # restored orders that later filled while the stream was up
    unexplained: int  # position differences at the next reconciliation no missed fill explains
    corrected: int  # differences that reconciliation corrected (fills missed while dropped)
    resubmitted: int  # submissions, after a restart, of orders an earlier run had submitted
    refused_repeats: int  # the venue's 422 "client_order_id must be unique"
    venue_orders: int
    undecided: int  # venue orders whose client order id no logged decision produced
    over_target: int  # looks at a symbol whose venue exposure was beyond +-qty
    halted_open: int  # orders open at the venue when ``tickd halt`` took effect
    halted_cancelled: int  # ... that the daemon's stop (on_stop = "cancel") cancelled
    left_open: int  # orders of the daemon open at the venue after that stop
    faults: int  # kills, plus the venue's unanswered submissions

    def rows(self) -> list[Row]:
        name = "kill -9 and restart"
        return [
            figure(f"{name}: trials", self.trials, "trials"),
            figure(
                f"{name}: restart -> ready, p50", round(percentile(self.ready_seconds, 50), 2), "s"
            ),
            figure(
                f"{name}: restart -> ready, max", round(max(self.ready_seconds), 2), "s", "<=", 60
            ),
            figure(
                f"{name}: kills with orders resting at the venue",
                self.kills_with_open_orders,
                "kills",
                ">=",
                self.trials,
            ),
            figure(f"{name}: kills with a submission in flight", self.kills_in_flight, "kills"),
            figure(f"{name}: orders open at the venue at the kills", self.open_at_kills, "orders"),
            figure(f"{name}: open orders restored as working", self.restored, "orders"),
            figure(
                f"{name}: open orders the restart did not restore",
                self.not_restored,
                "orders",
                "==",
                0,
            ),
            figure(
                f"{name}: working orders the venue did not have open",
                self.phantoms,
                "orders",
                "==",
                0,
            ),
            figure(f"{name}: restored orders filled later", self.restored_filled, "orders"),
            figure(
                f"{name}: position differences no missed fill explains",
                self.unexplained,
                "symbols",
                "==",
                0,
            ),
            figure(
                f"{name}: differences reconciliation corrected (stream dropped)",
                self.corrected,
                "differences",
            ),
            figure(
                f"{name}: orders submitted again after a restart",
                self.resubmitted,
                "orders",
                "==",
                0,
            ),
            figure(
                f"{name}: repeated client order ids the venue refused (422)",
                self.refused_repeats,
                "refusals",
            ),
            figure(f"{name}: orders at the venue", self.venue_orders, "orders"),
            figure(
                f"{name}: venue orders no logged decision produced",
                self.undecided,
                "orders",
                "==",
                0,
            ),
            # No target yet: runs see 0-3 looks beyond +-qty, not explained so far (no
            # duplicate order, positions equal to the venue's); see docs/reliability.md.
            figure(
                f"{name}: venue exposure beyond the strategy's target", self.over_target, "looks"
            ),
            figure(f"{name}: faults injected", self.faults, "faults"),
            figure(
                "kill switch (tickd run): orders open when halted, then stopped",
                self.halted_open,
                "orders",
                ">=",
                1,
            ),
            figure(
                "kill switch (tickd run): cancelled by the stop while halted",
                self.halted_cancelled,
                "orders",
            ),
            figure(
                "kill switch (tickd run): orders left open after the stop",
                self.left_open,
                "orders",
                "==",
                0,
            ),
        ]


QTY: Final = 1  # the restart strategy's size: its exposure per symbol stays within +-QTY
OPEN: Final = frozenset({"new", "accepted", "pending_new", "partially_filled"})
# The adapter's and the broker actor's lines that mean a submission of the order they name.
SUBMITTING: Final = frozenset(
    {"order_submitted", "order_submit_failed", "order_found", "order_sent", "order_fate_unknown"}
)


def _tickd() -> str:
    return str(Path(sys.executable).with_name("tickd"))


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
        env.pop(name, None)
    env |= {
        "APCA_API_KEY_ID": KEY,
        "APCA_API_SECRET_KEY": SECRET,
        "NUMBA_CACHE_DIR": str(work / "numba-cache"),
    }
    return env


def _daemon_config(urls: dict[str, str], work: Path) -> Path:
    """RSI reversion on 2- and 3-bar indicators with loose thresholds (it decides often),
    passive limit orders 0.2 % from the close that rest at the venue, cancelled at a stop."""
    path = work / "tickd.toml"
    path.write_text(
        f"""state_dir = "{work / "state"}"

[alpaca]
stream_url = "{urls["market_data_url"]}"
data_url = "{urls["data_url"]}"
trading_stream_url = "{urls["trading_stream_url"]}"
stock_channels = ["trades", "bars"]
silence_limit = 0
warmup_bars = 30

[symbols]
stocks = ["AAPL", "MSFT", "NVDA"]

[broker]
kind = "alpaca"
trading_url = "{urls["trading_url"]}"
timeout = 0.5
on_stop = "cancel"

[risk]
trading_hours = "always"
max_orders_per_minute = 600

[log]
format = "json"

[tracing]
exporter = "none"

[[strategies]]
kind = "rsi_reversion"
params = {{ rsi_period = 2, oversold = 35, exit_level = 50, overbought = 65, bb_period = 3, \
bb_dev = 1.0, qty = {QTY}, allow_short = true, order_type = "limit", limit_offset = 0.002, \
time_in_force = "gtc" }}
""",
        encoding="utf-8",
    )
    return path


class _Venue:
    """The fake exchange subprocess's REST side, as a test client sees it."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.url = urls["trading_url"]
        self.headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}

    def get(self, path: str, **params: Any) -> Any:
        """A GET, asked again while the venue restarts (it refuses connections meanwhile)."""
        for _ in range(50):
            try:
                reply = requests.get(
                    self.url + path, params=params, headers=self.headers, timeout=10
                )
            except requests.ConnectionError:
                time.sleep(0.1)
                continue
            reply.raise_for_status()
            return reply.json()
        raise TimeoutError(f"{self.url}{path}: no answer after 50 attempts")

    def held(self) -> int:
        return int(self.get("/_chaos")["injected"].get("submit_timeout", 0))

    def orders(self) -> list[dict[str, Any]]:
        """Every order, paged by submission time as Alpaca pages them."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params = {"status": "all", "limit": 500, "direction": "asc"}
            page = self.get("/v2/orders", **(params | ({"after": after} if after else {})))
            found += page
            if len(page) < 500:
                return found
            after = page[-1]["submitted_at"]

    def open(self) -> set[str]:
        """The client order ids of the orders open now."""
        return {o["client_order_id"] for o in self.get("/v2/orders", status="open", limit=500)}


def _exposure(orders: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Position plus open orders per symbol, signed, from one list of orders: each order
    counts once, whether it is open or filled when listed (no race with a fill between two
    requests)."""
    found: dict[str, Decimal] = {}
    for o in orders:
        live = Decimal(o["qty"]) if o["status"] in OPEN else Decimal(o["filled_qty"] or 0)
        signed = live if o["side"] == "buy" else -live
        found[o["symbol"]] = found.get(o["symbol"], Decimal(0)) + signed
    return found


def _over_target(orders: list[dict[str, Any]]) -> int:
    return sum(1 for q in _exposure(orders).values() if abs(q) > QTY)


def _events(log: Path) -> list[dict[str, Any]]:
    """The log's JSON lines; a last line still being written (no newline yet) or any line that
    does not parse is skipped."""
    text = log.read_text(encoding="utf-8", errors="replace")
    events = []
    for line in text.splitlines(keepends=True):
        if not (line.startswith("{") and line.endswith("\n")):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _wait_for(log: Path, predicate: Any, timeout: float, skip: int = 0) -> dict[str, Any]:
    """The first event after the first ``skip`` that ``predicate`` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in _events(log) if predicate(e)]
        if len(found) > skip:
            return found[skip]
        time.sleep(0.05)
    raise TimeoutError(f"no such log line in {timeout} s: {log}")


def _spawn(config: Path, work: Path, run: int) -> tuple[subprocess.Popen[bytes], Path, float]:
    log = work / f"run{run}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_tickd(), "run", "--config", str(config)],
            env=_env(work),
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log, time.monotonic()


def _ready(process: subprocess.Popen[bytes], log: Path, spawned: float) -> float:
    try:
        _wait_for(log, lambda e: e.get("event") == "daemon_ready", 120)
    except TimeoutError:
        raise AssertionError(log.read_text()[-4000:]) from None
    return time.monotonic() - spawned


def _end(process: subprocess.Popen[bytes], graceful: float) -> None:
    """SIGTERM, and after ``graceful`` seconds SIGKILL; always reaped."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(graceful)
            except subprocess.TimeoutExpired:
                process.kill()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _submitted(log: Path) -> set[str]:
    return {
        str(e["client_order_id"])
        for e in _events(log)
        if e.get("event") in SUBMITTING and "client_order_id" in e
    }


def _reconciliation(
    log: Path, why: str, skip: int = 0, timeout: float = 60
) -> tuple[dict[str, Any], list[str]]:
    """The ``skip``-th reconciliation for ``why`` once logged, and its differences (logged just
    before it: one reconciliation at a time)."""
    _wait_for(log, lambda e: e.get("event") == "reconciled" and e.get("why") == why, timeout, skip)
    seen, lines = 0, []
    for event in _events(log):
        if event.get("event") == "reconcile_difference" and event.get("why") == why:
            lines.append(str(event.get("difference", "")))
        elif event.get("event") == "reconciled" and event.get("why") == why:
            if seen == skip:
                return event, lines
            seen, lines = seen + 1, []
    raise AssertionError("unreachable: the line was found above")


_POSITION = re.compile(r"position (\S+): venue (\S+), local (\S+)")
_MISSED = re.compile(r"fill \S+ \((buy|sell) (\S+) (\S+) at \S+\): missed by the stream")


def _unexplained(differences: list[str]) -> int:
    """Symbols whose position difference is not the sum of the fills the stream missed (a fill
    applied twice, or one the stream delivered and the daemon dropped)."""
    missed: dict[str, Decimal] = {}
    for line in differences:
        if m := _MISSED.match(line):
            qty = Decimal(m[2]) if m[1] == "buy" else -Decimal(m[2])
            missed[m[3]] = missed.get(m[3], Decimal(0)) + qty
    return sum(
        1
        for line in differences
        if (m := _POSITION.match(line))
        and Decimal(m[2]) - Decimal(m[3]) != missed.get(m[1], Decimal(0))
    )


def _decided(logs: list[Path], salt: str) -> set[str]:
    """The client order ids of every decision the daemon logged (``strategy_decided``)."""
    return {
        client_order_id(salt, str(e["strategy"]), str(e["event_id"]), str(e["symbol"]))
        for log in logs
        for e in _events(log)
        if e.get("event") == "strategy_decided"
    }


def restart_trials(work: Path, trials: int, *, seed: int = 5) -> RestartRun:
    """``trials`` times: once orders of a ``tickd run`` subprocess rest at the venue (passive
    limits) and, if it comes within 10 s, a submission the venue kept is unanswered (every 5th),
    SIGKILL it; restart it on the same state directory, time it to ready, and compare what it
    took as working with what the venue had open. Then wait for a restored order to fill while
    the stream is up and drop the ``trade_updates`` stream: the reconciliation that follows
    must find no position difference other than the fills it missed while dropped. At the end,
    ``tickd halt`` and a stop (on_stop = "cancel") must leave nothing open at the venue."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    command = [
        _tickd(),
        "fake-exchange",
        "--speed",
        "120",
        "--symbols",
        "AAPL,MSFT,NVDA",
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--seed",
        str(seed),
        "--submit-timeout-every",
        "5",
    ]
    ready_seconds: list[float] = []
    kills_open = kills_in_flight = open_at_kills = restored = not_restored = phantoms = 0
    restored_filled = unexplained = corrected = resubmitted = over_target = 0
    logs: list[Path] = []
    exchange = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(work)
    )
    try:
        assert exchange.stdout is not None
        urls = json.loads(exchange.stdout.readline())
        venue = _Venue(urls)
        config = _daemon_config(urls, work)
        process, log, spawned = _spawn(config, work, 0)
        logs.append(log)
        try:
            _ready(process, log, spawned)
            for trial in range(1, trials + 1):
                held = venue.held()
                kills_open += _until(lambda: bool(venue.open()), 60)
                kills_in_flight += _until(lambda: venue.held() > held, 10)  # noqa: B023
                time.sleep(rng.uniform(0, 0.3))
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                orders = venue.orders()
                over_target += _over_target(orders)
                at_kill = {o["client_order_id"] for o in orders if o["status"] in OPEN}
                open_at_kills += len(at_kill)
                before = set().union(*(_submitted(x) for x in logs))

                process, log, spawned = _spawn(config, work, trial)
                logs.append(log)
                ready_seconds.append(_ready(process, log, spawned))
                started, _ = _reconciliation(log, "start")
                working = set(started.get("working", ()))
                still = venue.open()  # a restored order may have filled since: not counted
                restored += len(working & at_kill)
                not_restored += len((at_kill - working) & still)
                phantoms += len(working - at_kill)

                # A restored order fills while the stream is up (the market comes to it), then
                # the stream drops: the reconciliation says whether the stream applied it once.
                if working and _until(lambda: bool(working - venue.open()), 20):  # noqa: B023
                    restored_filled += len(working - venue.open())
                time.sleep(0.5)  # the stream delivers it
                why = "trade_updates reconnected"
                done = sum(
                    1
                    for e in _events(log)
                    if e.get("event") == "reconciled" and e.get("why") == why
                )
                requests.post(venue.url + "/_chaos", json={"restart_for": 0.3}, timeout=10)
                _, differences = _reconciliation(log, why, skip=done)
                unexplained += _unexplained(differences)
                corrected += len(differences)
                resubmitted += len(_submitted(log) & before)

            # The kill switch on the daemon's own path: halted with orders open, then stopped.
            _until(lambda: bool(venue.open()), 60)
            subprocess.run(
                [_tickd(), "halt", "--config", str(config)],
                env=_env(work),
                check=True,
                capture_output=True,
                timeout=60,
            )
            _wait_for(
                log,
                lambda e: e.get("event") == "risk_state_changed" and e.get("state") == "halted",
                10,
            )
            time.sleep(0.3)  # a submission answered late may still land
            halted_open = len(venue.open())
        finally:
            _end(process, 45)
        stopped = [e for e in _events(log) if e.get("event") == "stop_orders_cancelled"]
        orders = venue.orders()
        left_open = sum(1 for o in orders if o["status"] in OPEN)
        faults = trials + venue.held()
    finally:
        _end(exchange, 20)
    salt = (work / "state" / "order-salt").read_text(encoding="ascii").strip()
    decided = _decided(logs, salt)
    return RestartRun(
        trials=trials,
        ready_seconds=ready_seconds,
        kills_with_open_orders=kills_open,
        kills_in_flight=kills_in_flight,
        open_at_kills=open_at_kills,
        restored=restored,
        not_restored=not_restored,
        phantoms=phantoms,
        restored_filled=restored_filled,
        unexplained=unexplained,
        corrected=corrected,
        resubmitted=resubmitted,
        refused_repeats=sum(
            1
            for x in logs
            for e in _events(x)
            if e.get("event") == "order_submit_failed" and e.get("kind") == "duplicate"
        ),
        venue_orders=len(orders),
        undecided=sum(1 for o in orders if o["client_order_id"] not in decided),
        over_target=over_target + _over_target(orders),
        halted_open=halted_open,
        halted_cancelled=sum(int(e.get("cancelled", 0)) for e in stopped),
        left_open=left_open,
        faults=faults,
    )


# --- 3. the kill switch ---------------------------------------------------------------------------


@dataclass
class KillSwitchRun:
    halt_latency: float  # seconds from the operator's command to the first intent denied
    reduce_latency: float
    denied_after_halt: int  # intents judged after the halt took effect, and denied
    approved_after_halt: int  # ... and approved (target 0)
    venue_orders_after_halt: int  # orders that reached the venue while halted (target 0)
    reducing_passed: int  # reducing intents under REDUCING that became venue orders
    reducing_sent: int
    increasing_denied: int
    increasing_sent: int
    resumed: bool  # an intent passed again after ``resume``

    def rows(self) -> list[Row]:
        name = "kill switch"
        return [
            figure(
                f"{name}: halt command -> first denial",
                round(self.halt_latency, 3),
                "s",
                "<=",
                CONTROL_TARGET,
            ),
            figure(
                f"{name}: reduce command -> first denial",
                round(self.reduce_latency, 3),
                "s",
                "<=",
                CONTROL_TARGET,
            ),
            figure(
                f"{name}: intents approved while halted",
                self.approved_after_halt,
                "intents",
                "==",
                0,
            ),
            figure(f"{name}: intents denied while halted", self.denied_after_halt, "intents"),
            figure(
                f"{name}: orders reaching the venue while halted",
                self.venue_orders_after_halt,
                "orders",
                "==",
                0,
            ),
            figure(
                f"{name}: reducing orders refused under REDUCING",
                self.reducing_sent - self.reducing_passed,
                "orders",
                "==",
                0,
            ),
            figure(
                f"{name}: increasing orders passed under REDUCING",
                self.increasing_sent - self.increasing_denied,
                "orders",
                "==",
                0,
            ),
        ]


CONTROL_TARGET: Final = 1.5  # s: the watcher looks at the command file every second


class _Intents:
    """Fresh intents (a new event id each), as a strategy would make them."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, symbol: str, side: str, qty: int = 1) -> OrderIntent:
        self.made += 1
        return OrderIntent(
            strategy=STRATEGY,
            symbol=symbol,
            side=side,
            qty=Decimal(qty),  # type: ignore[arg-type]
            time_in_force="gtc",
            event_id=f"switch-{self.made}",
            ts_event=self.made,
        )


async def _until_denied(rig: _Rig, make: Any, rule: str, trigger: float) -> float:
    """Send an intent every 10 ms until risk denies one by ``rule``; seconds since
    ``trigger``. What was approved in between (the command not read yet) is placed."""
    with anyio.fail_after(10):
        while True:
            before = rig.risk.denied[rule]
            await rig.decide([make()])
            if rig.risk.denied[rule] > before:
                return anyio.current_time() - trigger
            await anyio.sleep(0.01)


async def kill_switch(state_dir: Path, *, rounds: int = 20, seed: int = 3) -> KillSwitchRun:
    """Drive ``tickd halt``/``reduce``/``resume`` (the command file, read by the daemon's
    :class:`~tickd.daemon.control.ControlWatcher` at its default interval) while intents flow
    through risk and the broker actor to the fake venue; ``rounds`` intents of each kind."""
    make = _Intents()
    async with _rig(seed, state_dir=state_dir) as rig:
        engine = rig.exchange.engine
        watcher = ControlWatcher(state_dir, rig.risk, rig.clock)
        async with anyio.create_task_group() as tasks:
            await tasks.start(watcher.run)
            # Long AAPL, short MSFT. (Cancels while halted: the daemon's own stop, in the
            # restart scenario, where ``tickd run`` cancels what is open at the venue.)
            await rig.decide([make("AAPL", "buy", rounds * 2), make("MSFT", "sell", rounds * 2)])
            await rig.settle()

            trigger = anyio.current_time()
            write_command(state_dir, RiskState.HALTED, "reliability: halt")
            halt_latency = await _until_denied(rig, lambda: make("AAPL", "buy"), "halted", trigger)
            approved, placed = rig.risk.approved, len(engine.orders())
            denied = rig.risk.denied["halted"]
            for i in range(rounds):  # every kind of new order, reducing ones too
                await rig.decide([make(SYMBOLS[i % 2], ("buy", "sell")[i % 3 % 2], 1 + i % 3)])
            approved_after = rig.risk.approved - approved
            denied_after = rig.risk.denied["halted"] - denied + 1
            venue_after_halt = len(engine.orders()) - placed

            trigger = anyio.current_time()
            write_command(state_dir, RiskState.REDUCING, "reliability: reduce")
            reduce_latency = await _until_denied(
                rig, lambda: make("AAPL", "buy"), "reducing", trigger
            )
            await rig.settle()
            reducing = [
                make("AAPL", "sell") if i % 2 else make("MSFT", "buy") for i in range(rounds)
            ]
            increasing = [
                make("AAPL", "buy") if i % 2 else make("MSFT", "sell") for i in range(rounds)
            ]
            held = _local(rig.portfolio)
            crossing = [
                make("AAPL", "sell", int(held["AAPL"]) + 5),
                make("MSFT", "buy", int(-held["MSFT"]) + 5),
            ]
            for intent in reducing + increasing + crossing:
                await rig.decide([intent])
            at_venue = {o.client_order_id for o in engine.orders()}
            passed = sum(1 for i in reducing if _coid(i) in at_venue)
            refused = sum(1 for i in increasing + crossing if _coid(i) not in at_venue)

            write_command(state_dir, RiskState.ACTIVE, "reliability: resume")
            with anyio.fail_after(5):
                while rig.risk.state is not RiskState.ACTIVE:
                    await anyio.sleep(0.01)
            resumed = bool(await rig.decide([make("AAPL", "buy")]))
            tasks.cancel_scope.cancel()
    return KillSwitchRun(
        halt_latency=halt_latency,
        reduce_latency=reduce_latency,
        denied_after_halt=denied_after,
        approved_after_halt=approved_after,
        venue_orders_after_halt=venue_after_halt,
        reducing_passed=passed,
        reducing_sent=len(reducing),
        increasing_denied=refused,
        increasing_sent=len(increasing) + len(crossing),
        resumed=resumed,
    )


def _coid(intent: OrderIntent) -> str:
    return client_order_id(SALT, intent.strategy, intent.event_id, intent.symbol)


def _local(portfolio: Portfolio) -> dict[str, Decimal]:
    return {s: portfolio.position(s) for s in portfolio.positions if portfolio.position(s)}


# --- the bench ------------------------------------------------------------------------------------


def figures(quick: bool) -> list[Row]:
    """Every orders scenario at CI size (``quick``) or at the published size; the submission
    attempts that met a fault, with the kills and held submissions of the restarts, clear the
    issue's 1,000 with margin at full size."""
    with tempfile.TemporaryDirectory(prefix="tickd-orders-") as work:
        ambiguous = anyio.run(partial(ambiguous_submits, 150 if quick else 1600))
        restarts = restart_trials(Path(work) / "restart", 2 if quick else 10)
        switch = anyio.run(partial(kill_switch, Path(work) / "switch", rounds=10 if quick else 50))
    total = sum(ambiguous.faults.values()) + restarts.faults
    return [
        *ambiguous.rows(),
        *restarts.rows(),
        figure("orders: faults met in all", total, "faults", ">=", 100 if quick else 1000),
        *switch.rows(),
    ]
