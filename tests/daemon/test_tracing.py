"""Per-event tracing: the real daemon (feed over loopback, bank, strategy, risk, simulated broker)
writes its spans to the trace file; ``tickd trace`` reads the chain of one order back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import structlog
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tickd.codecs.schema import Bar, Order, OrderUpdate
from tickd.daemon import cli
from tickd.daemon.actors import Mailbox
from tickd.daemon.app import App
from tickd.daemon.clock import ManualClock
from tickd.daemon.config import RiskConfig, TracingConfig, load
from tickd.daemon.portfolio import Portfolio
from tickd.daemon.risk import RiskActor, RiskEngine
from tickd.daemon.trace_command import chain
from tickd.daemon.trace_export import JsonLinesSpanExporter, SpanRecord, read_spans
from tickd.daemon.tracing import Tracing, trace_ids
from tickd.strategies.base import OrderIntent, event_id

from .alpaca_server import Connection, MiniAlpaca

pytestmark = pytest.mark.usefixtures("compiled_banks")
START = 1_717_162_200_000_000_000
MINUTE = 60_000_000_000
CHAIN = ["event", "decode", "bank", "strategy", "risk", "submit", "ack", "fill"]


def _bars(symbol: str, n: int) -> list[Bar]:
    closes = [100.0 + 5 * math.sin(i / 4) for i in range(n)]
    return [
        Bar(
            symbol=symbol,
            ts_event=START + i * MINUTE,
            open=c,
            high=c + 0.5,
            low=c - 0.5,
            close=c,
            volume=100,
        )
        for i, c in enumerate(closes)
    ]


def _config(tmp_path: Path, url: str, tracing: str = "", risk: str = "") -> Path:
    path = tmp_path / "tickd.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[alpaca]\nfeed = "test"\nstream_url = "{url}"\n'
        '[symbols]\nstocks = ["AAPL"]\n'
        f'[risk]\ntrading_hours = "always"\n{risk}'
        '[[strategies]]\nkind = "ema_cross"\nparams = { fast = 3, slow = 6, qty = 1 }\n'
        f'[tracing]\nfile = "{tmp_path / "traces.jsonl"}"\n{tracing}'
    )
    return path


async def _run(
    tmp_path: Path, tracing: str = "", risk: str = "", frames: int = 12
) -> tuple[App, list[Any]]:
    """The daemon against a server that sends 60 bars, five to a frame (a bank call takes
    several bars of a symbol: the decision's links), and the lines it logged."""
    bars = _bars("AAPL", frames * 5)

    async def send(connection: Connection) -> None:
        for at in range(0, len(bars), 5):
            await connection.send(bars[at : at + 5])
            await anyio.sleep(0.02)
        await connection.websocket.wait_closed()

    server = MiniAlpaca(behaviours=[send])
    environ = {"APCA_API_KEY_ID": "key", "APCA_API_SECRET_KEY": "secret"}
    async with server.running():
        app = App(
            load(_config(tmp_path, server.url.rsplit("/v2", 1)[0], tracing, risk), environ=environ)
        )
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(app.run)
                with anyio.fail_after(20):
                    while app.indicators.mailbox.stats.received < len(bars):
                        await anyio.sleep(0.02)
                    await app.drained()
                app.stop()
    return app, logs


def _spans(tmp_path: Path) -> list[SpanRecord]:
    spans, bad = read_spans(tmp_path / "traces.jsonl")
    assert bad == 0
    return spans


@pytest.mark.anyio
async def test_an_orders_trace_holds_every_stage_in_order_with_its_causes(tmp_path: Path) -> None:
    app, logs = await _run(tmp_path)
    assert app.broker_actor.sent >= 2 and app.portfolio.fills >= 1
    spans = _spans(tmp_path)
    filled = [s for s in spans if s.name == "fill"]
    assert filled
    coid = filled[0].attributes["tickd.client_order_id"]
    found = chain(spans, coid)
    assert [s.name for s in found] == CHAIN
    starts = [s.start_ns for s in found]
    assert starts == sorted(starts)  # each stage starts after the one before
    assert all(s.end_ns >= s.start_ns for s in found)
    assert len({s.trace_id for s in found}) == 1
    root = found[0]
    assert root.parent_id is None
    # The event it was decided on names the trace, and the order names the event.
    risk = next(s for s in found if s.name == "risk")
    event = root.attributes["tickd.event_id"]
    assert event.startswith("Bar:AAPL:")
    assert root.trace_id == f"{trace_ids(app.tracing.salt, event)[0]:032x}"
    assert risk.attributes["tickd.approved"] is True
    # Several bars of AAPL went into the bank call the decision read: they are linked.
    linked = [link.attributes["tickd.event_id"] for link in root.links]
    assert linked and all(e.startswith("Bar:AAPL:") and e < event for e in linked)
    assert all(
        link.trace_id == f"{trace_ids(app.tracing.salt, e)[0]:032x}"
        for link, e in zip(root.links, linked, strict=True)
    )
    # Parents: decode and bank under the event; risk under the strategy; fill under submit.
    by_id = {s.span_id: s for s in found}
    assert by_id[risk.parent_id].name == "strategy"  # type: ignore[index]
    assert by_id[filled[0].parent_id].name == "submit"  # type: ignore[index]
    # The broker's log line for the order carries the order's trace id.
    sent = [line for line in logs if line["event"] == "order_sent"]
    assert sent and all(line.get("trace_id") for line in sent)
    assert {line["trace_id"] for line in sent} <= {s.trace_id for s in spans}
    # So does the strategy's decision, with the strategy stage's span id.
    decided = [line for line in logs if line["event"] == "strategy_decided"]
    assert len(decided) == app.host.intents
    strategy = next(s for s in found if s.name == "strategy")
    assert {"trace_id": root.trace_id, "span_id": strategy.span_id}.items() <= next(
        line for line in decided if line["event_id"] == event
    ).items()


@pytest.mark.anyio
async def test_tickd_trace_prints_the_chain_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _run(tmp_path)
    spans = _spans(tmp_path)
    coid = next(s for s in spans if s.name == "fill").attributes["tickd.client_order_id"]
    assert cli.main(["trace", coid, "--file", str(tmp_path / "traces.jsonl")]) == 0
    text = capsys.readouterr().out
    for stage in ("receive", *CHAIN[1:]):
        assert f"\n{stage} " in text or text.startswith(stage)
    assert "caused by Bar:AAPL:" in text and "fed also by Bar:AAPL:" in text
    config = str(tmp_path / "tickd.toml")
    assert cli.main(["trace", coid, "--config", config, "--json"]) == 0
    names = [span["name"] for span in json.loads(capsys.readouterr().out)]
    assert names == CHAIN
    order_id = next(s for s in spans if s.name == "submit").attributes["tickd.order_id"]
    assert cli.main(["trace", order_id, "--file", str(tmp_path / "traces.jsonl")]) == 0
    assert cli.main(["trace", "tickd-unknown", "--file", str(tmp_path / "traces.jsonl")]) == 1
    assert "no span names order tickd-unknown" in capsys.readouterr().err
    assert cli.main(["trace", coid, "--file", str(tmp_path / "missing.jsonl")]) == 66


@pytest.mark.anyio
async def test_a_risk_denial_ends_its_trace_with_the_reason(tmp_path: Path) -> None:
    app, logs = await _run(tmp_path, risk='state = "halted"\n')
    denials = [s for s in _spans(tmp_path) if s.name == "risk"]
    assert denials and all(s.status == "error" for s in denials)
    assert all(s.attributes["tickd.approved"] is False for s in denials)
    assert all(s.error == s.attributes["tickd.denied"] for s in denials)
    denied = [line for line in logs if line["event"] == "intent_denied"]
    assert denied and {line["trace_id"] for line in denied} == {s.trace_id for s in denials}
    assert app.broker_actor.sent == 0


@pytest.mark.anyio
async def test_a_sampled_event_that_led_to_no_order_has_a_trace(tmp_path: Path) -> None:
    app, _ = await _run(tmp_path)
    assert app.tracing is not None and app.tracing.sampled >= 1
    spans = _spans(tmp_path)
    names: dict[str, set[str]] = {}
    for span in spans:
        names.setdefault(span.trace_id, set()).add(span.name)
    sampled = [
        s
        for s in spans
        if s.parent_id is None
        and s.attributes["tickd.trace_reason"] == "sampled"
        and "risk" not in names[s.trace_id]
    ]
    assert sampled
    assert {"event", "decode", "bank", "strategy"} == names[sampled[0].trace_id]
    assert sampled[0].attributes["tickd.source"] == "alpaca.stocks"


@pytest.mark.anyio
async def test_events_over_the_latency_budget_are_counted_and_some_traced(tmp_path: Path) -> None:
    app, _ = await _run(tmp_path, tracing="latency_budget_ms = 0.000001\n")
    tracing = app.tracing
    assert tracing is not None
    # Every event is over a budget of 1 ns: all counted, at most ten a second traced.
    assert tracing.breaches == 60
    late = [
        s
        for s in _spans(tmp_path)
        if s.parent_id is None and s.attributes["tickd.trace_reason"] == "latency_budget"
    ]
    traced = tracing.breaches - tracing.breaches_untraced
    # An event chosen while its strategy decided on it is traced as the decision instead.
    decided_roots = {
        s.attributes["tickd.event_id"]
        for s in _spans(tmp_path)
        if s.parent_id is None and s.attributes["tickd.trace_reason"] == "decision"
    }
    assert len(late) >= 1 and len(late) <= traced <= len(late) + len(decided_roots)
    seconds = {s.start_ns // 10**9 for s in late}
    assert len(late) <= 10 * (len(seconds) + 1)
    # The stage latencies were noted for every pass, and folded at the stop.
    assert tracing.stages["decode"].count >= 1
    assert tracing.stages["decision"].count >= 1
    assert tracing.stages["risk"].count == app.host.intents


def _span(tracing: Tracing, name: str) -> None:
    tracing._emit(name, 1, 2, None, 10, 20, {"tickd.stage": name})


def test_the_trace_file_rotates_and_counts_what_does_not_decode(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    exporter = JsonLinesSpanExporter(path, max_bytes=2000)
    tracing = Tracing(TracingConfig(), "salt", SimpleSpanProcessor(exporter))
    for i in range(20):
        _span(tracing, f"stage{i}")
    tracing.shutdown()
    assert path.with_name("traces.jsonl.1").exists()
    assert path.stat().st_size <= 2000
    with path.open("ab") as file:
        file.write(b'{"trace_id": "torn')  # a crash in the middle of a line
    spans, bad = read_spans(path)
    assert bad == 1
    names = [s.name for s in spans]
    assert names == sorted(names, key=lambda n: int(n.removeprefix("stage")))  # oldest first
    assert names[-1] == "stage19" and len(names) < 20  # the older rotation is gone


def test_trace_ids_are_fixed_by_the_event_and_the_salt() -> None:
    bar = Bar(symbol="AAPL", ts_event=START, open=1, high=1, low=1, close=1, volume=1)
    name = event_id(bar)
    assert trace_ids("a", name) == trace_ids("a", name)
    assert trace_ids("a", name) != trace_ids("b", name)
    assert all(i > 0 for i in trace_ids("a", name))


def test_an_update_for_an_order_never_traced_is_ignored() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingConfig(), "salt", SimpleSpanProcessor(exporter))
    order = Order(
        id="1",
        client_order_id="tickd-x",
        symbol="AAPL",
        side="buy",
        order_type="market",
        time_in_force="day",
        status="new",
    )
    tracing.updated(OrderUpdate(event="fill", order=order), 5)
    tracing.submitted("tickd-x", 5)
    intent = OrderIntent(
        strategy="s", symbol="AAPL", side="buy", qty=1, event_id="Bar:AAPL:1", ts_event=1
    )
    tracing.risk(intent, "tickd-y", 1, 2, "halted")  # no decision noted: still its own trace
    [risk] = exporter.get_finished_spans()
    assert risk.name == "risk" and risk.parent is not None
    assert risk.context.trace_id == trace_ids("salt", "Bar:AAPL:1")[0]


def _intent(event: Bar) -> OrderIntent:
    return OrderIntent(
        strategy="s",
        symbol=event.symbol,
        side="buy",
        qty=1,
        event_id=event_id(event),
        ts_event=event.ts_event,
        ts_recv=event.ts_recv,
    )


def test_a_decided_event_that_is_also_due_a_sample_is_traced_as_the_decision() -> None:
    """The host notes its decisions, then ends the pass (where a sample or a budget breach may
    pick the same event), then risk judges: the event's root span is made once, so it must be
    the decision's, with its links, not the sample's without them."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(
        TracingConfig(sample_per_second=1000, latency_budget_ms=1e-6),
        "salt",
        SimpleSpanProcessor(exporter),
    )
    earlier, bar = (
        Bar(symbol="AAPL", ts_event=START + i * MINUTE, ts_recv=100 + i, open=1, high=1, low=1,
            close=1, volume=1)
        for i in range(2)
    )  # fmt: skip
    intent = _intent(bar)
    tracing.decided([intent], bar, (110, 120), 130, 140, links=[earlier])
    tracing.finished([([bar], (110, 120))], 150, strategy=(125, 150))  # sample and breach due
    tracing.risk(intent, "tickd-1", 160, 170, None)
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    [root] = [s for s in roots if s.context.trace_id == trace_ids("salt", event_id(bar))[0]]
    assert root.attributes is not None and root.attributes["tickd.trace_reason"] == "decision"
    assert [link.attributes["tickd.event_id"] for link in root.links] == [event_id(earlier)]  # type: ignore[index]
    # The next pass's sample is not held back by this pass's decision.
    tracing.finished([([earlier], (110, 120))], 10**12, strategy=(125, 150))
    assert any(
        s.parent is None and s.context.trace_id == trace_ids("salt", event_id(earlier))[0]
        for s in exporter.get_finished_spans()
    )


def test_two_acknowledgements_of_one_order_make_one_ack_span() -> None:
    """Alpaca may say pending_new (or accepted) and then new: a span id is made once."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingConfig(), "salt", SimpleSpanProcessor(exporter))
    bar = Bar(symbol="AAPL", ts_event=START, ts_recv=100, open=1, high=1, low=1, close=1, volume=1)
    tracing.risk(_intent(bar), "tickd-1", 110, 120, None)
    tracing.submitting("tickd-1", 130)
    tracing.submitted("tickd-1", 140, "venue-1", "pending_new")
    for event, at in (("pending_new", 150), ("new", 160)):
        order = Order(id="venue-1", client_order_id="tickd-1", symbol="AAPL", status=event)
        tracing.updated(OrderUpdate(event=event, order=order), at)
    acks = [s for s in exporter.get_finished_spans() if s.name == "ack"]
    assert len(acks) == 1 and acks[0].end_time == 150
    assert acks[0].attributes is not None and acks[0].attributes["tickd.stage"] == "ack"
    assert tracing.stages["ack"].count + len(tracing._pending["ack"]) == 1


def test_an_error_span_keeps_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker's exception text goes into the submit span (the trace file, a collector): it is
    masked as a log line would be."""
    from tickd.daemon import logs

    secret = "SKTESTSECRET4d8b0f6a2c9e"
    monkeypatch.setattr(logs._State, "secrets", logs._secrets_pattern({secret}))
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingConfig(), "salt", SimpleSpanProcessor(exporter))
    bar = Bar(symbol="AAPL", ts_event=START, ts_recv=100, open=1, high=1, low=1, close=1, volume=1)
    tracing.risk(_intent(bar), "tickd-1", 110, 120, None)
    tracing.submitting("tickd-1", 130)
    tracing.submitted("tickd-1", 140, error=f"fate unknown: HTTPError: 500 for key {secret}")
    [submit] = [s for s in exporter.get_finished_spans() if s.name == "submit"]
    assert submit.status.description == "fate unknown: HTTPError: 500 for key ***"


@pytest.mark.anyio
async def test_a_repeated_decision_risk_drops_leaves_no_stamps_behind() -> None:
    """The same decision twice (a replayed event) is one order: risk drops the second unjudged,
    and tracing must not keep its stamps waiting for ever (a long run grew by megabytes)."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingConfig(), "salt", SimpleSpanProcessor(exporter))
    sent: list[Any] = []

    async def send(items: list[Any]) -> None:
        sent.extend(items)

    portfolio = Portfolio()
    portfolio.mark("AAPL", 100.0)
    engine = RiskEngine(
        msgspec.convert({"trading_hours": "always"}, RiskConfig), portfolio, ["AAPL"], [],
        ManualClock(START),
    )  # fmt: skip
    actor = RiskActor(Mailbox("risk", 10), engine, "salt" * 8, send, tracing=tracing)
    bar = Bar(symbol="AAPL", ts_event=START, ts_recv=100, open=1, high=1, low=1, close=1, volume=1)
    intent = _intent(bar)
    for _ in range(2):
        tracing.decided([intent], bar, (110, 120), 130, 140, links=[])
        await actor.handle([intent])
    assert len(sent) == 1 and actor.repeated == 1
    assert not tracing._decisions
