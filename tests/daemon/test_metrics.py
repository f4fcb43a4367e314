"""The daemon's metrics: a real trading graph runs bars to orders, then the snapshot, the OTel
instruments (through an in-memory reader, or OTLP over HTTP), the summary line and the status
text must all tell the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from structlog.testing import capture_logs

from tickd.codecs.schema import Bar, Quote, Trade
from tickd.daemon.actors import Mailbox
from tickd.daemon.app import App
from tickd.daemon.bus import Bus
from tickd.daemon.clock import ManualClock
from tickd.daemon.config import Config, TracingConfig
from tickd.daemon.feeds.polling import NewsPoller
from tickd.daemon.feeds.websocket import WebsocketFeed
from tickd.daemon.metrics import Metrics
from tickd.daemon.risk import RiskState
from tickd.daemon.tracing import Tracing

from .otlp_collector import collector

pytestmark = pytest.mark.usefixtures("compiled_bank")
START = 1_717_162_200_000_000_000
MINUTE = 60 * 10**9
# A zig-zag: the fast EMA crosses the slow one every few bars, so ema_cross trades.
CLOSES = [100.0 + (5 if (i // 4) % 2 else -5) + i * 0.01 for i in range(40)]


def config(tmp_path: Path, **sections: Any) -> Config:
    raw: dict[str, Any] = {
        "state_dir": str(tmp_path),
        "alpaca": {"key_id": "key", "secret_key": "secret"},
        "symbols": {"stocks": ["AAPL", "MSFT"]},
        "risk": {"trading_hours": "always"},
        "strategies": [{"kind": "ema_cross", "params": {"fast": 3, "slow": 6, "qty": 1}}],
        **sections,
    }
    return msgspec.convert(raw, Config)


def bars(symbol: str) -> list[Bar]:
    return [
        Bar(
            symbol=symbol,
            ts_event=START + i * MINUTE,
            open=c,
            high=c + 1,
            low=c - 1,
            close=c,
            volume=100,
        )
        for i, c in enumerate(CLOSES)
    ]


def tracing() -> Tracing:
    """The real tracer with stage times recorded by hand (its hot-path stamps are its own
    tests' business): 100 decisions, 1..100 us."""
    tracer = Tracing(TracingConfig(), salt="salt")
    for us in range(1, 101):
        tracer.stages["decision"].record(us * 1000)
        tracer.stages["decode"].record(us * 10)
    tracer.sampled, tracer.breaches, tracer.spans = 4, 1, 12
    return tracer


async def trade(app: App) -> None:
    """Run the graph, one bar a minute for both symbols, and a quote nobody asked for."""
    clock = app.clock
    assert isinstance(clock, ManualClock)
    async with anyio.create_task_group() as tg:
        await tg.start(app.run)
        for aapl, msft in zip(bars("AAPL"), bars("MSFT"), strict=True):
            clock.set(aapl.ts_event)
            await app.bus.publish_many([aapl, msft])
            await app.drained()
        quote = Quote(
            symbol="AAPL", ts_event=START, bid_price=1, bid_size=1, ask_price=2, ask_size=1
        )
        await app.bus.publish(quote)
        await app.drained()
        app.stop()


def collected(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, Any], ...], Any]]:
    """Each metric's points by their sorted attributes."""
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = {
                    tuple(sorted((p.attributes or {}).items())): p.value  # type: ignore[union-attr]
                    for p in metric.data.data_points
                }
    return points


@pytest.mark.anyio
async def test_a_trading_run_counts_every_message_order_and_stage(tmp_path: Path) -> None:
    app = App(config(tmp_path), clock=ManualClock(START), feeds=False)
    reader = InMemoryMetricReader()
    metrics = Metrics(app, tracing(), reader)
    await trade(app)
    snap = metrics.snapshot()

    sent = app.broker_actor.sent
    assert sent > 0 and app.host.intents == sent  # every intent went out (risk allows them)
    assert snap["messages"]["Bar"] == 80
    assert snap["messages"]["OrderIntent"] == app.host.intents
    assert snap["messages"]["OrderRequest"] == sent
    # Nobody subscribes to the snapshots when the strategies get them straight from the bank.
    assert snap["unrouted"] == {"IndicatorSnapshot": 80, "Quote": 1}
    assert snap["messages"]["Quote"] == 1
    assert snap["orders"] == {
        "sent": sent,
        "rejected": 0,
        "unavailable": 0,
        "error": 0,
        "denied": 0,
    }
    mailboxes = {"indicators": 0, "strategies": 0, "risk": 0, "broker": 0}
    assert snap["conflated"] == snap["dropped"] == mailboxes
    assert snap["restarts"] == {a.name: 0 for a in app.actors}
    assert snap["strategy_errors"] == {}
    assert snap["frames"] == snap["reconnects"] == {}  # no feeds in a replay
    assert snap["tracing"] == {"sampled": 4, "breaches": 1, "spans": 12}
    decision = snap["stages"]["decision"]
    assert decision["n"] == 100 and decision["max_us"] == 100.0
    assert 49 <= decision["p50_us"] <= 51 and 97 <= decision["p99_us"] <= 100  # within 3 %
    handled = snap["stages"]["actor.indicators"]
    assert handled["n"] == app.indicators.handle_time.count > 0
    assert snap["stages"]["fill"]["n"] == 0

    points = collected(reader)
    assert points["tickd.messages"][(("kind", "Bar"),)] == 80
    assert points["tickd.unrouted"][(("kind", "Quote"),)] == 1
    assert points["tickd.orders"][(("outcome", "sent"),)] == sent
    assert points["tickd.orders"][(("outcome", "denied"),)] == 0
    assert points["tickd.conflated"][(("mailbox", "risk"),)] == 0
    assert points["tickd.restarts"][(("actor", "broker"),)] == 0
    assert points["tickd.tracing"][(("counter", "spans"),)] == 12
    latency = points["tickd.stage.latency"]
    assert latency[(("quantile", "p50"), ("stage", "decision"))] == decision["p50_us"]
    assert latency[(("quantile", "max"), ("stage", "decision"))] == 100.0
    assert latency[(("quantile", "p99"), ("stage", "actor.risk"))] > 0
    assert not any(dict(key)["stage"] == "fill" for key in latency)  # no records, no gauges
    counts = points["tickd.stage.count"]
    assert counts[(("stage", "decision"),)] == 100 and counts[(("stage", "fill"),)] == 0
    metrics.provider.shutdown()


@pytest.mark.anyio
async def test_the_summary_line_has_totals_and_the_rate_since_the_last_one(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    app = App(config(tmp_path), clock=clock, feeds=False)
    metrics = Metrics(app, tracing(), InMemoryMetricReader())
    await trade(app)  # 39 minutes of bars
    published = sum(app.bus.published.values())
    app.feeds = App(config(tmp_path)).feeds  # a feed built, not run: its counters set by hand
    app.feeds[0].stats.messages = 80  # as the feed would count the bars it published
    with capture_logs() as logs:
        metrics.summary_line()
        clock.advance(10)
        metrics.summary_line()
    first, second = logs
    assert first["event"] == "metrics_summary" and first["log_level"] == "info"
    assert first["messages"] == published  # on the bus: the bars and what came of them
    assert first["received"] == 80
    assert first["msgs_per_s"] == round(80 / (39 * 60), 1)  # the feeds' data messages
    assert second["msgs_per_s"] == 0.0  # nothing came in the last 10 s
    assert first["orders"]["sent"] == app.broker_actor.sent
    assert first["decode_errors"] == first["reconnects"] == first["dropped"] == 0
    assert first["traced"] == {"sampled": 4, "breaches": 1, "spans": 12}
    # The traced stages with records; the actors' only when tracing is off.
    assert set(first["latency_us"]) == {"decode", "decision"}
    assert (
        first["latency_us"]["decision"]["p99"] == metrics.snapshot()["stages"]["decision"]["p99_us"]
    )
    metrics.tracing = None
    with capture_logs() as logs:
        metrics.summary_line()
    assert set(logs[0]["latency_us"]) == {
        "actor.indicators",
        "actor.strategies",
        "actor.risk",
        "actor.broker",
    }
    metrics.provider.shutdown()


@pytest.mark.anyio
async def test_the_status_text_is_one_short_line(tmp_path: Path) -> None:
    clock = ManualClock(START)
    app = App(config(tmp_path), clock=clock, feeds=False)
    metrics = Metrics(app, tracing(), InMemoryMetricReader())
    p99 = f"p99 decision {metrics.snapshot()['stages']['decision']['p99_us']:.0f} us"
    assert metrics.status_text() == f"starting · 0 msg/s · 0 orders · {p99} · 0 errors"
    await trade(app)
    app.feeds = App(config(tmp_path)).feeds  # a feed built, not run: its counters set by hand
    metrics.status_text()  # the rate is per call: the next one counts from here
    quote = Quote(symbol="AAPL", ts_event=START, bid_price=1, bid_size=1, ask_price=2, ask_size=1)
    await app.bus.publish_many([quote] * 50)
    app.feeds[0].stats.messages += 50  # as the feed counts what it publishes
    clock.advance(2)
    sent = app.broker_actor.sent
    assert metrics.status_text() == f"ready · 25 msg/s · {sent} orders · {p99} · 0 errors"
    app.supervisor.restarts["risk"] += 1
    app.risk.set_state(RiskState.HALTED, "test", "operator")
    text = metrics.status_text()
    assert text == f"ready · risk halted · 0 msg/s · {sent} orders · {p99} · 1 errors"
    assert len(text) < 200
    metrics.provider.shutdown()


def test_feeds_report_frames_reconnects_gaps_decode_and_protocol_errors(tmp_path: Path) -> None:
    """Feeds are built but not run: their counters are set as a run would leave them."""
    app = App(
        config(
            tmp_path,
            strategies=[],
            newsapi={"enabled": True, "key": "news-key"},
        )
    )
    stocks, poller = app.feeds
    assert isinstance(stocks, WebsocketFeed) and isinstance(poller, NewsPoller)
    stocks.stats.connects, stocks.stats.frames, stocks.stats.gaps = 3, 120, 2
    stocks.stats.decode_errors = stocks.stats.dropped_frames = stocks.stats.protocol_errors = 1
    poller.stats.decode_errors = 5
    metrics = Metrics(app, None, InMemoryMetricReader())
    snap = metrics.snapshot()
    assert snap["frames"] == {stocks.source: 120}  # a poller has no frames
    assert snap["reconnects"] == {stocks.source: 2}  # connections after the first
    assert snap["gaps"] == {stocks.source: 2}
    assert snap["dropped_frames"] == {stocks.source: 1}
    assert snap["decode_errors"] == {stocks.source: 1, poller.source: 5}
    assert snap["protocol_errors"] == {stocks.source: 1}
    assert snap["orders"] == snap["tracing"] == {}  # not trading, not tracing
    assert set(snap["stages"]) == {"actor.indicators"}
    assert metrics.status_text() == "starting · 0 msg/s · 7 errors"
    metrics.provider.shutdown()


@pytest.mark.anyio
async def test_run_logs_a_summary_every_interval(tmp_path: Path) -> None:
    clock = ManualClock(START)
    app = App(config(tmp_path, log={"summary_interval": 30}), clock=clock, feeds=False)
    metrics = Metrics(app, None, InMemoryMetricReader())
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(metrics.run)
            for _ in range(2):
                await anyio.wait_all_tasks_blocked()
                clock.advance(30)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        metrics.shutdown()  # and a last line
    assert [line["event"] for line in logs] == ["metrics_summary"] * 3


@pytest.mark.anyio
async def test_no_summary_interval_means_no_summary_lines(tmp_path: Path) -> None:
    app = App(config(tmp_path, log={"summary_interval": 0}), clock=ManualClock(), feeds=False)
    metrics = Metrics(app, None, InMemoryMetricReader())
    with anyio.fail_after(1), capture_logs() as logs:
        await metrics.run()  # returns at once
    assert logs == []
    metrics.provider.shutdown()


@pytest.mark.anyio
async def test_the_bus_counts_what_is_published_by_kind_on_every_path() -> None:
    bus = Bus()
    trades: Mailbox[Any] = Mailbox("trades", 100)
    bus.subscribe(trades, Trade)
    trade = Trade(symbol="AAPL", ts_event=START, price=1.0, size=1)
    await bus.publish_many([trade] * 3)  # one kind, whole frame
    await bus.publish_many([trade, *bars("AAPL")[:2]])  # two kinds, no routing by symbol
    bus.subscribe(Mailbox("msft bars", 100), Bar, ["MSFT"])
    await bus.publish_many([trade, *bars("AAPL")[:2]])  # bars routed one by one
    await bus.publish(trade)
    assert bus.published == {"Trade": 6, "Bar": 4}
    assert bus.unrouted == {"Bar": 4}


def test_the_otlp_exporter_sends_the_counters_with_the_service_resource(tmp_path: Path) -> None:
    with collector(ExportMetricsServiceRequest.FromString, "/v1/metrics") as (endpoint, received):
        metrics_config = {"exporter": "otlp", "otlp_endpoint": endpoint, "interval": 3600}
        app = App(
            config(tmp_path, metrics=metrics_config, tracing={"service_name": "tickd-test"}),
            feeds=False,
        )
        app.bus.unrouted["Quote"] = 7
        Metrics(app, None).shutdown()  # the last export, at once
    [request] = received
    [resource] = request.resource_metrics
    attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert attributes["service.name"] == "tickd-test" and attributes["service.version"]
    metrics = {m.name: m for s in resource.scope_metrics for m in s.metrics}
    [point] = metrics["tickd.unrouted"].sum.data_points
    assert point.as_int == 7 and point.attributes[0].value.string_value == "Quote"
    assert metrics["tickd.unrouted"].sum.is_monotonic
