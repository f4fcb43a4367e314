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
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import requests

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

__all__ = ["AmbiguousRun", "ambiguous_submits", "figures", "venue_positions"]

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


def duplicates(orders: Sequence[Any], intended: set[str]) -> int:
    """Orders beyond the first under one client order id, plus orders no intent asked for."""
    counts = Counter(o.client_order_id for o in orders)
    return sum(n - 1 for n in counts.values()) + sum(
        n for cid, n in counts.items() if cid not in intended
    )


def mismatches(local: dict[str, Decimal], venue: dict[str, Decimal]) -> int:
    """Symbols whose signed quantity differs between two views (flat counts as absent)."""
    return sum(1 for s in set(local) | set(venue) if local.get(s, 0) != venue.get(s, 0))


# --- 1. ambiguous submits -------------------------------------------------------------------------


@dataclass
class AmbiguousRun:
    intents: int
    faults: dict[str, int]  # injected by the venue, by kind
    venue_orders: int
    filled: int  # of those, filled (each moved a position both sides must agree on)
    duplicates: int
    unresolved: int  # intents the daemon neither placed nor saw refused
    missing: int  # intents with no order at the venue
    stream_mismatches: int  # positions the stream alone got wrong, before the final reconcile
    mismatches: int  # positions differing from the venue's after reconciliation
    broker: dict[str, int]  # the adapter's counters
    seconds: float

    def rows(self) -> list[Row]:
        faults = sum(self.faults.values())
        name = "ambiguous submits"
        return [
            figure(
                f"{name}: faults injected",
                faults,
                "faults",
                ">=",
                1000 if self.intents >= 1000 else 100,
            ),
            figure(f"{name}: intents", self.intents, "intents"),
            figure(f"{name}: duplicate orders at the venue", self.duplicates, "orders", "==", 0),
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
                f"{name}: position mismatches after reconciliation",
                self.mismatches,
                "symbols",
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
    async with _rig(seed, timeout=timeout, workers=batch) as rig:
        exchange, actor = rig.exchange, rig.actor
        exchange.chaos.update(dict(SUBMIT_FAULTS))
        for at in range(0, len(wanted), batch):
            await rig.decide(list(wanted[at : at + batch]))
        exchange.chaos.update(dict.fromkeys(SUBMIT_FAULTS, 0))
        stream_mismatches = await rig.settle()
        await actor.reconcile("the run is over")
        after = mismatches(_local(rig.portfolio), venue_positions(exchange.engine))
        orders = exchange.engine.orders()
    coids = {_coid(i) for i in wanted}
    stats = rig.broker.stats
    return AmbiguousRun(
        intents=intents,
        faults=dict(exchange.chaos.injected),
        venue_orders=len(orders),
        filled=sum(1 for o in orders if o.status == "filled"),
        duplicates=duplicates(orders, coids),
        unresolved=intents - actor.sent - actor.failed["rejected"],
        missing=len(coids - {o.client_order_id for o in orders}),
        stream_mismatches=stream_mismatches,
        mismatches=after,
        broker={
            "timeouts": stats.timeouts,
            "retries": stats.retries,
            "found by client order id": stats.duplicates_resolved,
            "rejected": stats.rejected,
            "unavailable": stats.unavailable,
        },
        seconds=anyio.current_time() - started,
    )


# --- 2. kill -9 of the daemon with orders in flight, then a restart ------------------------------


@dataclass
class RestartRun:
    trials: int
    ready_seconds: list[float]  # spawn of the restarted daemon -> its ``daemon_ready``
    kills_in_flight: int  # kills while a submission the venue kept was still unanswered
    venue_orders: int
    duplicates: int
    mismatches: int  # positions the restarted daemon got wrong, at a later reconciliation
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
            figure(f"{name}: kills with a submission in flight", self.kills_in_flight, "kills"),
            figure(f"{name}: orders at the venue", self.venue_orders, "orders"),
            figure(f"{name}: duplicate orders at the venue", self.duplicates, "orders", "==", 0),
            figure(
                f"{name}: position mismatches after reconciliation",
                self.mismatches,
                "symbols",
                "==",
                0,
            ),
            figure(f"{name}: faults injected", self.faults, "faults"),
        ]


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
timeout = 2.0
on_stop = "keep"

[risk]
trading_hours = "always"
max_orders_per_minute = 600

[log]
format = "json"

[tracing]
exporter = "none"

[[strategies]]
kind = "ema_cross"
params = {{ fast = 2, slow = 3, qty = 1, allow_short = true }}
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

    def positions(self) -> dict[str, Decimal]:
        return {p["symbol"]: Decimal(p["qty"]) for p in self.get("/v2/positions")}


def _events(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _wait_for(log: Path, predicate: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _events(log):
            if predicate(event):
                return event
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
        process.kill()
        raise AssertionError(log.read_text()[-4000:]) from None
    return time.monotonic() - spawned


def restart_trials(work: Path, trials: int, *, seed: int = 5) -> RestartRun:
    """``trials`` times: SIGKILL a ``tickd run`` subprocess right after the venue kept an order
    it did not answer (every 2nd submission), restart it on the same state directory, time it
    to ready, then make the venue drop the ``trade_updates`` stream: the reconciliation that
    follows compares the restarted daemon's positions with the venue's."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    command = [
        _tickd(),
        "fake-exchange",
        "--speed",
        "600",
        "--symbols",
        "AAPL,MSFT,NVDA",
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--seed",
        str(seed),
        "--submit-timeout-every",
        "2",
    ]
    exchange = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(work)
    )
    ready_seconds: list[float] = []
    kills_in_flight = mismatched = 0
    process: subprocess.Popen[bytes] | None = None
    try:
        assert exchange.stdout is not None
        urls = json.loads(exchange.stdout.readline())
        venue = _Venue(urls)
        config = _daemon_config(urls, work)
        process, log, spawned = _spawn(config, work, 0)
        _ready(process, log, spawned)
        for trial in range(1, trials + 1):
            held = venue.held()
            deadline = time.monotonic() + 60
            while venue.held() == held and time.monotonic() < deadline:
                time.sleep(0.02)
            kills_in_flight += venue.held() > held
            time.sleep(rng.uniform(0, 0.5))  # somewhere within the 2 s the broker waits
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            process, log, spawned = _spawn(config, work, trial)
            ready_seconds.append(_ready(process, log, spawned))
            time.sleep(1.0)  # trading again
            requests.post(venue.url + "/_chaos", json={"restart_for": 0.3}, timeout=10)
            event = _wait_for(
                log,
                lambda e: (
                    e.get("event") == "reconciled" and e.get("why") == "trade_updates reconnected"
                ),
                60,
            )
            mismatched += sum(
                1
                for e in _events(log)
                if e.get("event") == "reconcile_difference"
                and e.get("why") == event["why"]
                and str(e.get("difference", "")).startswith("position ")
            )
        orders = venue.orders()
        faults = trials + venue.held()
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(45)
            except subprocess.TimeoutExpired:
                process.kill()
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(20)
    counts = Counter(o["client_order_id"] for o in orders)
    return RestartRun(
        trials=trials,
        ready_seconds=ready_seconds,
        kills_in_flight=kills_in_flight,
        venue_orders=len(orders),
        duplicates=sum(n - 1 for n in counts.values()),
        mismatches=mismatched,
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
    cancels: int  # open orders cancelled while halted
    canceled_at_venue: int
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
                f"{name}: cancels refused while halted",
                self.cancels - self.canceled_at_venue,
                "cancels",
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

    def __call__(
        self, symbol: str, side: str, qty: int = 1, limit: float | None = None
    ) -> OrderIntent:
        self.made += 1
        return OrderIntent(
            strategy=STRATEGY,
            symbol=symbol,
            side=side,
            qty=Decimal(qty),  # type: ignore[arg-type]
            type="market" if limit is None else "limit",
            limit_price=None if limit is None else Decimal(str(limit)),
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
            price = {s: float(rig.portfolio.marks[s]) for s in SYMBOLS}
            # Long AAPL, short MSFT, and orders resting far from the market (to cancel).
            await rig.decide([make("AAPL", "buy", rounds * 2), make("MSFT", "sell", rounds * 2)])
            await rig.decide(
                [
                    make(s, "buy", 1, limit=round(price[s] / 2, 2))
                    for s in SYMBOLS
                    for _ in range(rounds // 2)
                ]
            )
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
            open_orders = await rig.broker.open_orders()
            for order in open_orders:  # cancels do not pass through risk: they always go
                await rig.broker.cancel(order.id)
            canceled = sum(1 for o in open_orders if engine.get(o.id).status == "canceled")
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
        cancels=len(open_orders),
        canceled_at_venue=canceled,
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
    """Every orders scenario at CI size (``quick``) or at the published size; the faults of
    the ambiguous submits and of the restarts add up to the issue's 1,000."""
    with tempfile.TemporaryDirectory(prefix="tickd-orders-") as work:
        ambiguous = anyio.run(partial(ambiguous_submits, 150 if quick else 1300))
        restarts = restart_trials(Path(work) / "restart", 2 if quick else 10)
        switch = anyio.run(partial(kill_switch, Path(work) / "switch", rounds=10 if quick else 50))
    total = sum(ambiguous.faults.values()) + restarts.faults
    return [
        *ambiguous.rows(),
        *restarts.rows(),
        figure("orders: faults injected in all", total, "faults", ">=", 100 if quick else 1000),
        *switch.rows(),
    ]
