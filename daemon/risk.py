"""Risk: every order intent is checked here before it can become an order.

:class:`RiskEngine` holds the limits (``[risk]`` in the config) and the trading state:

- ``active``: intents that pass every limit are approved;
- ``reducing``: only intents that shrink a position (toward zero, never across it);
- ``halted``: every intent is denied (cancels do not pass through risk: they are always allowed).

The state changes by config (the state at start), by a breach (the day's loss passing
``max_daily_loss`` switches to ``on_daily_loss`` once per New York trading day; an operator's
resume holds for the rest of that day), and by the operator (``tickd halt``/``reduce``/
``resume`` writing the control file, or SIGUSR1/SIGUSR2). Every change is logged and written to
``risk.json`` in the state directory. A denial carries its reason and is counted by rule.

:class:`RiskActor` owns the engine and the portfolio: it applies fills and marks, checks
intents, and hands approved ones to the broker with their deterministic client order id.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from tickd.codecs.schema import Bar, CryptoBar, CryptoTrade, OrderUpdate, Trade
from tickd.strategies.base import OrderIntent

from .actors import Actor, Mailbox
from .broker.base import OrderRequest
from .broker.ids import client_order_id
from .clock import Clock
from .config import RiskConfig
from .market_hours import is_open
from .portfolio import Portfolio
from .tracing import Tracing

__all__ = ["RiskActor", "RiskEngine", "RiskState"]

_log = structlog.get_logger("tickd.risk")
_NEW_YORK = ZoneInfo("America/New_York")
_MINUTE_NS = 60 * 10**9


class RiskState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"

    @property
    def strictness(self) -> int:
        return _STRICTNESS[self]


_STRICTNESS = {RiskState.ACTIVE: 0, RiskState.REDUCING: 1, RiskState.HALTED: 2}


class RiskEngine:
    def __init__(
        self,
        config: RiskConfig,
        portfolio: Portfolio,
        symbols: Iterable[str],
        crypto: Iterable[str],
        clock: Clock,
        report: Path | None = None,
    ) -> None:
        self.config = config
        self.portfolio = portfolio
        self.allowed = frozenset(config.allowed_symbols or symbols)
        self.crypto = frozenset(crypto)
        self.clock = clock
        self.report = report
        self.state = RiskState(config.state)
        self.reason = "config"
        self.approved = 0
        self.denied: Counter[str] = Counter()  # by rule
        self.reconciling = False  # set by the broker actor while local state is being replaced
        self.stopping = False  # set by the app's stop before it cancels open orders
        self._sent: deque[int] = deque()  # monotonic times of approvals in the last minute
        self._day: dt.date | None = None
        self._day_start_pnl = Decimal(0)
        self._breached: dt.date | None = None
        #: A stricter state carried over from earlier today (see :meth:`_restore`), and why.
        self.restored: RiskState | None = None
        self.restored_reason = ""
        self._limits = {
            name: Decimal(repr(getattr(config, name))).normalize()
            for name in (
                "max_position",
                "max_order_notional",
                "max_gross_exposure",
                "max_daily_loss",
            )
        }
        self._restore()
        self._write_report(self.reason if self.reason == "config" else "restart")

    def _restore(self) -> None:
        """Carry the day's stricter state over a restart: a breach today (or a halt) must not be
        lifted by the service manager restarting the daemon."""
        if self.report is None:
            return
        try:
            before = json.loads(self.report.read_text(encoding="utf-8"))
            state, day = RiskState(before["state"]), str(before.get("day"))
        except (OSError, ValueError, KeyError, TypeError):
            return  # no report (first start) or an unreadable one: the config decides
        if day != str(self._today()):
            return
        if before.get("breached") == day:
            self._breached = self._today()
        if state.strictness > self.state.strictness:
            self.restored = state
            self.restored_reason = f"{before.get('reason', '')} (before a restart)"
            self.state, self.reason = state, self.restored_reason

    def set_state(self, state: RiskState, reason: str, source: str) -> bool:
        """Switch the trading state; returns whether it changed."""
        if state == self.state:
            return False
        _log.warning(
            "risk_state_changed", previous=self.state, state=state, reason=reason, source=source
        )
        self.state, self.reason = state, reason
        self._write_report(source)
        return True

    def check(self, intent: OrderIntent) -> str | None:
        """None if ``intent`` may become an order now, else the reason it may not."""
        rule, reason = self._check(intent)
        if rule is None:
            self.approved += 1
            self._sent.append(self.clock.monotonic_ns())
            return None
        self.denied[rule] += 1
        return reason

    def recheck(self, intent: OrderIntent) -> str | None:
        """None if an approved order may still be sent, else why not: it waited for the broker
        (a backlog of slow submits) while trading was halted, a reduce-only state began or the
        daemon began to stop. A kill switch that let the queue out would not be one. (Asked
        again and again while an order waits on the rate limit: it counts nothing.)"""
        if self.stopping:
            return "the daemon is stopping"
        if self.state is RiskState.HALTED:
            return f"trading is halted ({self.reason})"
        if self.state is RiskState.REDUCING:
            after = self.portfolio.exposure(intent.symbol)  # the approved order counts in it
            if not _reduces(after - intent.signed_qty, after):
                return f"only orders that reduce a position ({self.reason})"
        return None

    def _check(self, intent: OrderIntent) -> tuple[str | None, str]:
        self.watch_loss()
        portfolio, limits, symbol = self.portfolio, self._limits, intent.symbol
        if self.reconciling:
            return "reconciling", "local state is being reconciled with the broker"
        if self.stopping:
            return "stopping", "the daemon is stopping"
        if self.state is RiskState.HALTED:
            return "halted", f"trading is halted ({self.reason})"
        held = portfolio.exposure(symbol)
        after = held + intent.signed_qty
        if self.state is RiskState.REDUCING and not _reduces(held, after):
            return "reducing", f"only orders that reduce a position ({self.reason})"
        if symbol not in self.allowed:
            return "symbol", f"{symbol} is not an allowed symbol"
        if (
            self.config.trading_hours == "regular"
            and symbol not in self.crypto
            and not is_open("us_equity", self.clock.now_ns())
        ):
            return "hours", "outside regular trading hours"
        now = self.clock.monotonic_ns()
        while self._sent and self._sent[0] <= now - _MINUTE_NS:
            self._sent.popleft()
        if len(self._sent) >= self.config.max_orders_per_minute:
            return "rate", f"{len(self._sent)} orders in the last minute"
        # Valued at the dearer of the limit and the last price: a marketable limit (a sell far
        # below the market) must not slip past the notional limit.
        mark, limit = portfolio.marks.get(symbol), intent.limit_price
        prices = [p for p in (mark, limit) if p is not None]
        if not prices:
            return "price", f"no price yet to value a {symbol} order"
        price = max(prices)
        notional = intent.qty * price
        if notional > limits["max_order_notional"]:
            return "notional", f"order notional {notional:.2f} > {limits['max_order_notional']:f}"
        if abs(after) > limits["max_position"] and abs(after) > abs(held):
            return (
                "position",
                f"{symbol} position would be {after} (limit {limits['max_position']:f})",
            )
        gross = portfolio.gross_exposure((symbol, intent.signed_qty, price))
        if gross > limits["max_gross_exposure"] and abs(after) > abs(held):
            return (
                "exposure",
                f"gross exposure would be {gross:.2f} (limit {limits['max_gross_exposure']:f})",
            )
        return None, ""

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock.now_ns() / 1e9, tz=_NEW_YORK).date()

    def watch_loss(self) -> None:
        """Track the New York trading day's PnL and act on a breach (once a day). A breach only
        ever makes the state stricter: it never lifts a halt."""
        today = self._today()
        pnl = self.portfolio.pnl()
        if today != self._day:
            self._day, self._day_start_pnl = today, pnl
        loss = self._day_start_pnl - pnl
        if loss > self._limits["max_daily_loss"] and self._breached != today:
            self._breached = today
            reason = f"daily loss {loss:.2f} > {self._limits['max_daily_loss']:f}"
            state = RiskState(self.config.on_daily_loss)
            if state.strictness > self.state.strictness:
                self.set_state(state, reason, "breach")
            else:
                _log.warning("risk_daily_loss_breached", reason=reason, state=self.state)
                self._write_report("breach")

    def _write_report(self, source: str) -> None:
        if self.report is None:
            return
        body = {
            "state": str(self.state),
            "reason": self.reason,
            "source": source,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "day": str(self._today()),  # New York trading day
            "breached": str(self._breached) if self._breached else None,
        }
        self.report.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.report.with_suffix(".tmp")
        temporary.write_text(json.dumps(body) + "\n", encoding="utf-8")
        os.replace(temporary, self.report)


class RiskActor(Actor[Any]):
    """Receives intents, order updates and marks; sends approved orders to the broker."""

    def __init__(
        self,
        mailbox: Mailbox[Any],
        engine: RiskEngine,
        salt: str,
        send: Callable[[list[Any]], Awaitable[None]],
        tracing: Tracing | None = None,
    ) -> None:
        super().__init__("risk", mailbox)
        self.tracing = tracing
        self.engine = engine
        self.portfolio = engine.portfolio
        self.salt = salt
        self._send = send
        self.denials: deque[tuple[OrderIntent, str]] = deque(maxlen=1000)  # the latest ones
        self.repeated = 0  # decisions already sent in this run (the venue guards across runs)
        self._sent: OrderedDict[str, None] = OrderedDict()

    async def on_stop(self) -> None:
        # A batch cut short (a crash, a cancellation) is not retried: its intents not judged
        # must stop counting as intended, or their strategy would wait on them for ever.
        for item in self.current:
            if type(item) is OrderIntent:
                self.portfolio.settle(item)

    async def handle(self, batch: list[Any]) -> None:
        portfolio, engine = self.portfolio, self.engine
        moved = False  # a fill or a mark: the day's PnL may have changed
        for item in batch:
            kind = type(item)
            if kind is OrderIntent:
                await self._decide(item)
            elif kind is OrderUpdate:
                moved |= portfolio.apply(item)
                if self.tracing is not None:
                    self.tracing.updated(item, time.time_ns())
            elif kind is Bar or kind is CryptoBar:
                portfolio.mark(item.symbol, item.close)
                moved = True
            elif kind is Trade or kind is CryptoTrade:
                portfolio.mark(item.symbol, item.price)
                moved = True
        if moved:
            engine.watch_loss()

    async def _decide(self, intent: OrderIntent) -> None:
        if self.tracing is None:
            await self._judge(intent, None)
            return
        # Every line logged while deciding (a limit breached, a state change) names the trace.
        with structlog.contextvars.bound_contextvars(**self.tracing.context(intent)):
            await self._judge(intent, self.tracing)

    async def _judge(self, intent: OrderIntent, tracing: Tracing | None) -> None:
        started = time.time_ns() if tracing is not None else 0
        self.portfolio.settle(intent)  # judged against what is held and working without it
        coid = client_order_id(self.salt, intent.strategy, intent.event_id, intent.symbol)
        if coid in self._sent:
            self.repeated += 1  # the same decision again (a replayed event): one order
            if tracing is not None:
                tracing.forget(intent)
            return
        reason = self.engine.check(intent)
        if tracing is not None:
            tracing.risk(intent, coid, started, time.time_ns(), reason)
        if reason is not None:
            self.denials.append((intent, reason))
            _log.info(
                "intent_denied",
                strategy=intent.strategy,
                symbol=intent.symbol,
                side=intent.side,
                qty=str(intent.qty),
                reason=reason,
                event_id=intent.event_id,
            )
            return
        self._sent[coid] = None
        if len(self._sent) > 100_000:
            self._sent.popitem(last=False)
        self.portfolio.add_working(coid, intent, pending_since=self.engine.clock.now_ns())
        # Sent at once, not at the end of the batch: whatever happens next in this batch, an
        # order counted as working is on its way.
        await self._send([OrderRequest(client_order_id=coid, intent=intent)])


def _reduces(held: Decimal, after: Decimal) -> bool:
    """``after`` is nearer flat than ``held``, on the same side (or flat): never a new position
    on the other side."""
    return abs(after) < abs(held) and (after == 0 or (after > 0) == (held > 0))
