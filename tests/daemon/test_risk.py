"""Risk: each limit and each state, one by one; the operator's switch; the risk actor."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from tickd.codecs.schema import Bar, Order, OrderUpdate
from tickd.daemon.actors import Mailbox
from tickd.daemon.broker.base import OrderRequest
from tickd.daemon.broker.ids import client_order_id
from tickd.daemon.clock import ManualClock
from tickd.daemon.config import RiskConfig
from tickd.daemon.control import ControlWatcher, write_command
from tickd.daemon.portfolio import Portfolio
from tickd.daemon.risk import RiskActor, RiskEngine, RiskState
from tickd.strategies.base import OrderIntent

# Tuesday 2024-03-05 15:00 UTC = 10:00 in New York: the regular session.
OPEN_NS = 1_709_650_800 * 10**9
NIGHT_NS = OPEN_NS + 10 * 3600 * 10**9  # 20:00 in New York


def intent(side: str = "buy", qty: str = "10", symbol: str = "AAPL", **fields: Any) -> OrderIntent:
    return OrderIntent(
        strategy="s",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=Decimal(qty),
        event_id=fields.pop("event_id", f"Bar:{symbol}:1"),
        ts_event=OPEN_NS,
        **fields,
    )


def fill(side: str, qty: str, price: str, symbol: str = "AAPL", n: int = 1) -> OrderUpdate:
    order = Order(id=f"o{n}", client_order_id=f"c{n}", symbol=symbol, side=side)
    return OrderUpdate(
        event="fill", order=order, execution_id=f"e{n}", qty=Decimal(qty), price=Decimal(price)
    )


def engine(tmp_path: Path | None = None, **limits: Any) -> RiskEngine:
    portfolio = Portfolio()
    portfolio.mark("AAPL", 100.0)
    portfolio.mark("MSFT", 400.0)
    config = msgspec.convert(limits, RiskConfig)
    report = tmp_path / "risk.json" if tmp_path else None
    return RiskEngine(
        config, portfolio, ["AAPL", "MSFT", "BTC/USD"], ["BTC/USD"], ManualClock(OPEN_NS), report
    )


def test_an_order_within_every_limit_is_approved() -> None:
    risk = engine()
    assert risk.check(intent()) is None
    assert risk.approved == 1 and risk.denied == {}


@pytest.mark.parametrize(
    ("limits", "order", "rule", "words"),
    [
        ({"max_order_notional": 999}, intent(qty="10"), "notional", "order notional 1000.00"),
        ({"max_position": 5}, intent(qty="10"), "position", "AAPL position would be 10"),
        ({"max_gross_exposure": 500}, intent(qty="10"), "exposure", "gross exposure"),
        ({"allowed_symbols": ["MSFT"]}, intent(), "symbol", "AAPL is not an allowed symbol"),
        ({}, intent(symbol="TSLA"), "symbol", "TSLA is not an allowed symbol"),
        ({}, intent(type="limit", limit_price=Decimal(2000)), "notional", "20000.00"),
    ],
)
def test_each_limit_denies_with_its_reason(
    limits: dict[str, Any], order: OrderIntent, rule: str, words: str
) -> None:
    risk = engine(**limits)
    reason = risk.check(order)
    assert reason is not None and words in reason
    assert risk.denied == {rule: 1} and risk.approved == 0


def test_an_order_without_a_price_to_value_it_is_denied() -> None:
    risk = engine()
    del risk.portfolio.marks["AAPL"]
    assert risk.check(intent()) == "no price yet to value a AAPL order"
    limit = intent(type="limit", limit_price=Decimal("99.5"))
    assert risk.check(limit) is None  # the limit price values it


def test_a_position_limit_still_lets_a_position_shrink() -> None:
    risk = engine(max_position=5)
    risk.portfolio.apply(fill("buy", "20", "100"))  # over the limit already (a lowered limit)
    assert risk.check(intent("sell", "5")) is None
    assert risk.check(intent("buy", "1")) is not None


def test_working_orders_count_toward_the_position_limit() -> None:
    risk = engine(max_position=15)
    risk.portfolio.add_working("c1", intent(qty="10"))
    assert "position would be 20" in (risk.check(intent(qty="10")) or "")
    assert risk.check(intent(qty="5")) is None


def test_orders_per_minute_is_a_sliding_window() -> None:
    risk = engine(max_orders_per_minute=3)
    clock = risk.clock
    assert isinstance(clock, ManualClock)
    for _ in range(3):
        assert risk.check(intent(qty="1")) is None
        clock.advance(10)
    assert risk.check(intent(qty="1")) == "3 orders in the last minute"
    clock.advance(30.001)  # the first approval is now more than a minute old
    assert risk.check(intent(qty="1")) is None
    assert risk.denied == {"rate": 1}


def test_trading_hours_apply_to_stocks_not_crypto() -> None:
    risk = engine()
    assert isinstance(risk.clock, ManualClock)
    risk.clock.set(NIGHT_NS)
    assert risk.check(intent()) == "outside regular trading hours"
    risk.portfolio.mark("BTC/USD", 60_000.0)
    assert risk.check(intent(symbol="BTC/USD", qty="0.1")) is None
    always = engine(trading_hours="always")
    assert isinstance(always.clock, ManualClock)
    always.clock.set(NIGHT_NS)
    assert always.check(intent()) is None


def test_halted_denies_everything_and_reducing_only_what_shrinks(tmp_path: Path) -> None:
    risk = engine(tmp_path)
    risk.portfolio.apply(fill("buy", "10", "100"))
    assert risk.set_state(RiskState.REDUCING, "operator says", "operator")
    assert not risk.set_state(RiskState.REDUCING, "again", "operator")  # no change
    assert risk.check(intent("buy", "1")) == "only orders that reduce a position (operator says)"
    assert risk.check(intent("sell", "20")) is not None  # across zero: a new short
    assert risk.check(intent("sell", "4")) is None
    assert risk.check(intent("sell", "10")) is None  # to flat (the engine alone keeps no orders)
    risk.set_state(RiskState.HALTED, "stop", "operator")
    assert risk.check(intent("sell", "1")) == "trading is halted (stop)"
    report = json.loads((tmp_path / "risk.json").read_text())
    assert report["state"] == "halted" and report["reason"] == "stop"
    assert report["source"] == "operator"
    assert risk.denied == {"reducing": 2, "halted": 1}


def test_a_daily_loss_breach_switches_state_once_a_day() -> None:
    risk = engine(max_daily_loss=100, on_daily_loss="halted")
    clock = risk.clock
    assert isinstance(clock, ManualClock)
    risk.portfolio.apply(fill("buy", "10", "100"))
    risk.watch_loss()  # the day begins with this PnL (0)
    risk.portfolio.mark("AAPL", 89.0)  # -110
    assert risk.check(intent()) is not None
    assert risk.state is RiskState.HALTED and "daily loss 110.00" in risk.reason
    risk.set_state(RiskState.ACTIVE, "operator override", "operator")
    risk.portfolio.mark("AAPL", 80.0)  # worse, same day: the override holds
    assert risk.check(intent(qty="1")) is None
    clock.advance(24 * 3600)  # the next day starts from the day's PnL then
    risk.watch_loss()
    risk.portfolio.mark("AAPL", 70.0)  # -100 on the day: not more than the limit
    assert risk.check(intent(qty="1")) is None
    risk.portfolio.mark("AAPL", 69.0)
    assert risk.check(intent(qty="1")) is not None and risk.state is RiskState.HALTED


def test_the_default_breach_state_is_reducing() -> None:
    risk = engine(max_daily_loss=50)
    risk.portfolio.apply(fill("buy", "10", "100"))
    risk.watch_loss()
    risk.portfolio.mark("AAPL", 94.0)
    assert risk.check(intent("buy", "1")) is not None
    assert risk.state is RiskState.REDUCING
    assert risk.check(intent("sell", "10")) is None


def test_nothing_is_approved_while_reconciling() -> None:
    risk = engine()
    risk.reconciling = True
    assert risk.check(intent()) == "local state is being reconciled with the broker"


def test_the_control_file_switches_the_state(tmp_path: Path) -> None:
    risk = engine(tmp_path)
    watcher = ControlWatcher(tmp_path, risk, risk.clock)
    watcher.check()  # no file: nothing
    write_command(tmp_path, RiskState.HALTED, "lunch")
    watcher.check()
    assert (risk.state, risk.reason) == (RiskState.HALTED, "lunch")
    watcher.check()  # unchanged file: not applied again
    assert watcher.applied == 1
    (tmp_path / "control.json").write_text('{"state": "paused"}')
    watcher.check()
    assert watcher.invalid == 1 and risk.state is RiskState.HALTED  # a bad file changes nothing
    (tmp_path / "control.json").write_text("not json at all")
    watcher.check()
    assert watcher.invalid == 2


def test_tickd_halt_and_resume_write_the_command(tmp_path: Path) -> None:
    for verb, state in (("halt", "halted"), ("reduce", "reducing"), ("resume", "active")):
        result = subprocess.run(
            [sys.executable, "-m", "tickd.daemon.cli", verb, "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads((tmp_path / "control.json").read_text())["state"] == state
        risk = engine(tmp_path)
        ControlWatcher(tmp_path, risk, risk.clock).check()
        assert risk.state == state
    config = tmp_path / "tickd.toml"
    config.write_text(f'state_dir = "{tmp_path / "from-config"}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "tickd.daemon.cli", "halt", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert (tmp_path / "from-config" / "control.json").exists()


@pytest.mark.anyio
async def test_the_risk_actor_sends_approved_orders_once_with_their_ids() -> None:
    sent: list[Any] = []

    async def send(items: list[Any]) -> None:
        sent.extend(items)

    risk = engine(max_position=15)
    actor = RiskActor(Mailbox("risk", 10), risk, "salt" * 8, send)
    first = intent(qty="10", event_id="Bar:AAPL:1")
    bar = Bar(symbol="AAPL", ts_event=1, open=1, high=1, low=1, close=101.5, volume=1)
    await actor.handle([bar, first, first, intent(qty="10", event_id="Bar:AAPL:2")])
    assert risk.portfolio.marks["AAPL"] == Decimal("101.5")
    coid = client_order_id("salt" * 8, "s", "Bar:AAPL:1", "AAPL")
    assert sent == [OrderRequest(client_order_id=coid, intent=first)]
    assert actor.repeated == 1  # the same decision twice: one order
    assert [reason for _, reason in actor.denials] == ["AAPL position would be 20 (limit 15)"]
    assert risk.portfolio.working("AAPL") == 10
    done = fill("buy", "10", "101", n=1)
    await actor.handle(
        [
            msgspec.structs.replace(
                done, order=msgspec.structs.replace(done.order, client_order_id=coid)
            )
        ]
    )
    assert risk.portfolio.position("AAPL") == 10 and risk.portfolio.working("AAPL") == 0


def test_a_breach_never_lifts_a_halt() -> None:
    risk = engine(max_daily_loss=100)  # a breach switches to reducing
    risk.portfolio.apply(fill("buy", "10", "100"))
    risk.watch_loss()
    risk.set_state(RiskState.HALTED, "operator says", "operator")
    risk.portfolio.mark("AAPL", 80.0)
    assert risk.check(intent("sell", "5")) == "trading is halted (operator says)"
    assert risk.state is RiskState.HALTED


def test_a_marketable_limit_is_valued_at_the_market() -> None:
    risk = engine(max_order_notional=1000)  # AAPL marked at 100
    cheap_sell = intent("sell", "50", type="limit", limit_price=Decimal("0.01"))
    assert "order notional 5000.00" in (risk.check(cheap_sell) or "")


def test_a_restart_keeps_the_days_breach_over_an_older_command(tmp_path: Path) -> None:
    risk = engine(tmp_path, max_daily_loss=100)
    write_command(tmp_path, RiskState.ACTIVE, "an old resume")
    ControlWatcher(tmp_path, risk, risk.clock).check()
    risk.portfolio.apply(fill("buy", "10", "100"))
    risk.watch_loss()
    risk.portfolio.mark("AAPL", 80.0)
    risk.watch_loss()
    assert risk.state is RiskState.REDUCING
    report = json.loads((tmp_path / "risk.json").read_text())
    assert (report["source"], report["breached"], report["day"]) == (
        "breach",
        "2024-03-05",
        "2024-03-05",
    )

    restarted = engine(tmp_path, max_daily_loss=100)  # same day: the breach holds
    assert restarted.state is RiskState.REDUCING and "before a restart" in restarted.reason
    watcher = ControlWatcher(tmp_path, restarted, restarted.clock)

    async def start() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run)
            tg.cancel_scope.cancel()

    anyio.run(start)
    assert restarted.state is RiskState.REDUCING  # the old resume does not lift today's breach
    assert watcher.applied == 1
    write_command(tmp_path, RiskState.ACTIVE, "a new resume")
    watcher.check()
    assert restarted.state is RiskState.ACTIVE  # a new command does
    tomorrow = msgspec.convert({"max_daily_loss": 100}, RiskConfig)
    clock = ManualClock(OPEN_NS + 24 * 3600 * 10**9)
    fresh = RiskEngine(tomorrow, Portfolio(), ["AAPL"], [], clock, tmp_path / "risk.json")
    assert fresh.state is RiskState.ACTIVE  # a new day starts from the config


def test_a_halt_holds_across_a_restart_on_another_day(tmp_path: Path) -> None:
    risk = engine(tmp_path)
    write_command(tmp_path, RiskState.HALTED, "until I say so")
    ControlWatcher(tmp_path, risk, risk.clock).check()
    assert risk.state is RiskState.HALTED
    config = msgspec.convert({}, RiskConfig)
    clock = ManualClock(OPEN_NS + 24 * 3600 * 10**9)
    tomorrow = RiskEngine(config, Portfolio(), ["AAPL"], [], clock, tmp_path / "risk.json")
    assert tomorrow.state is RiskState.ACTIVE and tomorrow.restored is None  # another day
    watcher = ControlWatcher(tmp_path, tomorrow, clock)

    async def start() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run)
            tg.cancel_scope.cancel()

    anyio.run(start)
    assert (tomorrow.state, tomorrow.reason) == (RiskState.HALTED, "until I say so")


@pytest.mark.anyio
async def test_risk_judges_against_approved_orders_not_decisions_it_has_yet_to_judge() -> None:
    """Intents on their way count as working for strategies (no move decided twice), never for
    risk: another strategy's sell still in the mailbox must not turn a flatten into a 'new
    short' under REDUCING."""
    sent: list[Any] = []

    async def send(items: list[Any]) -> None:
        sent.extend(items)

    risk = engine()
    risk.portfolio.apply(fill("buy", "10", "100"))
    risk.set_state(RiskState.REDUCING, "operator says", "operator")
    flatten = intent("sell", "10", event_id="Bar:AAPL:7")
    other = msgspec.structs.replace(intent("sell", "5", event_id="Bar:AAPL:7"), strategy="t")
    for decided in (flatten, other):
        risk.portfolio.intend(decided)
    assert risk.portfolio.working("AAPL") == -15  # what the strategies see
    actor = RiskActor(Mailbox("risk", 10), risk, "salt" * 8, send)
    await actor.handle([flatten, other])
    assert [request.intent for request in sent] == [flatten]  # the second would cross zero
    assert not risk.portfolio.intended  # both judged
    assert risk.portfolio.working("AAPL") == -10


@pytest.mark.anyio
async def test_a_risk_batch_cut_short_stops_counting_its_intents() -> None:
    async def send(items: list[Any]) -> None:
        raise RuntimeError("the broker's mailbox is gone")

    risk = engine()
    first, second = intent(qty="1", event_id="Bar:AAPL:1"), intent(qty="1", event_id="Bar:AAPL:2")
    for decided in (first, second):
        risk.portfolio.intend(decided)
    actor = RiskActor(Mailbox("risk", 10), risk, "salt" * 8, send)
    actor.current = [first, second]
    with pytest.raises(RuntimeError):
        await actor.handle(actor.current)
    await actor.on_stop()  # what the actor's run does after the crash
    assert not risk.portfolio.intended  # the second was never judged, and no longer counts
