"""An order's part of its trace, whatever order the venue's answers come in."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tickd.codecs.schema import Order, OrderUpdate
from tickd.daemon.config import Config, TracingConfig
from tickd.daemon.trace_export import make_processor, resource_for
from tickd.daemon.tracing import Tracing, trace_ids
from tickd.strategies.base import OrderIntent

from .otlp_collector import collector

COID = "tickd-order"
INTENT = OrderIntent(
    strategy="s", symbol="AAPL", side="buy", qty=Decimal(2), event_id="Bar:AAPL:1", ts_event=1
)


def _approved() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingConfig(), "salt", SimpleSpanProcessor(exporter))
    tracing.risk(INTENT, COID, 100, 110, None)
    return tracing, exporter


def _update(event: str, status: str, qty: str = "0", execution: str | None = None) -> OrderUpdate:
    order = Order(
        id="venue-1",
        client_order_id=COID,
        symbol="AAPL",
        side="buy",
        order_type="market",
        time_in_force="day",
        status=status,
    )
    return OrderUpdate(
        event=event,
        order=order,
        qty=Decimal(qty) if qty != "0" else None,
        price=Decimal(10) if qty != "0" else None,
        execution_id=execution,
    )


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def test_a_fill_before_the_submit_call_returns_still_gets_its_submit_span() -> None:
    tracing, exporter = _approved()
    tracing.submitting(COID, 120)
    tracing.updated(_update("new", "new"), 130)  # the stream beat the REST answer
    tracing.updated(_update("fill", "filled", "2", "x1"), 140)
    tracing.submitted(COID, 150, "venue-1", "new")
    spans = _by_name(exporter)
    [submit], [ack], [fill] = spans["submit"], spans["ack"], spans["fill"]
    assert submit.start_time == 120 and submit.end_time == 150
    assert ack.parent is not None and ack.parent.span_id == submit.context.span_id
    assert fill.parent is not None and fill.parent.span_id == submit.context.span_id
    assert ack.start_time == 120 and fill.start_time == 130
    # The order is forgotten now that both sides are done: a late duplicate makes no span.
    before = len(exporter.get_finished_spans())
    tracing.updated(_update("fill", "filled", "2", "x1"), 160)
    assert len(exporter.get_finished_spans()) == before
    assert tracing.order_context(COID) == {}


def test_partial_fills_each_get_a_span_and_a_cancel_ends_the_order() -> None:
    tracing, exporter = _approved()
    tracing.submitting(COID, 120)
    tracing.submitted(COID, 125, "venue-1", "new")
    tracing.updated(_update("partial_fill", "partially_filled", "1", "x1"), 130)
    tracing.updated(_update("partial_fill", "partially_filled", "0.5", "x2"), 140)
    tracing.updated(_update("canceled", "canceled"), 150)
    spans = _by_name(exporter)
    assert [s.attributes["tickd.qty"] for s in spans["fill"]] == ["1", "0.5"]  # type: ignore[index]
    [done] = spans["done"]
    assert done.attributes["tickd.event"] == "canceled"  # type: ignore[index]
    assert tracing.order_context(COID) == {}  # forgotten


def test_a_rejected_submit_is_an_error_span_and_ends_the_order() -> None:
    tracing, exporter = _approved()
    tracing.submitting(COID, 120)
    tracing.submitted(COID, 130, error="rejected: insufficient buying power")
    [submit] = _by_name(exporter)["submit"]
    assert not submit.status.is_ok
    assert submit.status.description == "rejected: insufficient buying power"
    assert tracing.order_context(COID) == {}


def test_the_otlp_exporter_sends_the_chain_to_a_collector(tmp_path: Path) -> None:
    with collector(ExportTraceServiceRequest.FromString, "/v1/traces") as (endpoint, received):
        config = msgspec.convert(
            {
                "state_dir": str(tmp_path),
                "tracing": {"exporter": "otlp", "otlp_endpoint": endpoint, "service_name": "t"},
            },
            Config,
        )
        processor = make_processor(config)
        tracing = Tracing(config.tracing, "salt", processor, resource_for(config.tracing))
        tracing.risk(INTENT, COID, 100, 110, None)
        tracing.submitting(COID, 120)
        tracing.submitted(COID, 130, "venue-1", "new")
        tracing.shutdown()  # the batch goes out now
    spans = [
        (span, resource.resource)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = {span.name: span for span, _ in spans}
    assert set(names) == {"risk", "submit"}
    assert names["submit"].parent_span_id == names["risk"].span_id
    assert names["submit"].start_time_unix_nano == 120
    assert names["risk"].trace_id == trace_ids("salt", INTENT.event_id)[0].to_bytes(16)
    service = {a.key: a.value.string_value for a in spans[0][1].attributes}
    assert service["service.name"] == "t"


def test_a_fill_before_the_streams_new_is_the_orders_ack() -> None:
    """A venue that fills at once: the broker's own "fill" (from the order's answer) may finish
    the order before the stream's "new" comes; the ack is still in the chain, once."""
    tracing, exporter = _approved()
    tracing.submitting(COID, 120)
    tracing.submitted(COID, 130, "venue-1", "filled")
    tracing.updated(_update("fill", "filled"), 140)
    tracing.updated(_update("new", "new"), 150)  # late, for an order already forgotten
    spans = _by_name(exporter)
    [ack], [fill] = spans["ack"], spans["fill"]
    assert ack.attributes["tickd.event"] == "fill"  # type: ignore[index]
    assert ack.end_time == 140 and fill.start_time == 140
