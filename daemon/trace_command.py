"""``tickd trace ORDER_ID``: the causal chain of one order, from the trace file.

The order is found by its client order id or the venue's id. Its chain is the spans that name it
(risk, submit, ack, fills, its end), their ancestors (the strategy's decision, the event), and the
event's own stages (decode, the bank call): other orders decided on the same event share the
trace but not the chain. Each stage prints its start after the frame was received, how long it
took and how long the event waited before it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from .config import EX_CONFIG, ConfigError, load
from .trace_export import SpanRecord, read_spans, trace_file

__all__ = ["add_verb", "chain", "format_chain", "trace_command"]

EX_NOT_FOUND, EX_NOINPUT = 1, 66
_EVENT_STAGES = frozenset({"decode", "bank"})


def add_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = verbs.add_parser(
        "trace",
        help="print the causal chain of one order (wire frame to fill) with each stage's latency",
    )
    trace.add_argument("order_id", metavar="ORDER_ID", help="client order id or the venue's id")
    where = trace.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="the daemon's configuration (its file)")
    where.add_argument("--file", metavar="PATH", help="the trace file (traces.jsonl)")
    trace.add_argument("--json", action="store_true", help="the chain's spans as JSON")


def chain(spans: list[SpanRecord], order_id: str) -> list[SpanRecord]:
    """The spans of ``order_id``'s chain, in start order ([] if no span names it)."""
    named = [
        s
        for s in spans
        if order_id
        in (s.attributes.get("tickd.client_order_id"), s.attributes.get("tickd.order_id"))
    ]
    if not named:
        return []
    trace_id = named[0].trace_id
    coid = next(
        (
            s.attributes["tickd.client_order_id"]
            for s in named
            if "tickd.client_order_id" in s.attributes
        ),
        order_id,
    )
    trace = {s.span_id: s for s in spans if s.trace_id == trace_id}
    picked = {
        s.span_id for s in trace.values() if s.attributes.get("tickd.client_order_id") == coid
    }
    for span_id in list(picked):  # and their ancestors
        parent = trace[span_id].parent_id
        while parent is not None and parent in trace and parent not in picked:
            picked.add(parent)
            parent = trace[parent].parent_id
    roots = {s for s in picked if trace[s].parent_id is None}
    picked |= {
        s.span_id for s in trace.values() if s.parent_id in roots and s.name in _EVENT_STAGES
    }

    def depth(span: SpanRecord) -> int:  # a parent first when it starts with its child
        n = 0
        while span.parent_id in trace:
            span, n = trace[span.parent_id], n + 1
        return n

    return sorted((trace[s] for s in picked), key=lambda s: (s.start_ns, depth(s)))


def format_chain(spans: list[SpanRecord], order_id: str) -> list[str]:
    root = next((s for s in spans if s.parent_id is None), spans[0])
    origin = root.start_ns
    attributes = root.attributes
    lines = [f"order {order_id}  trace {root.trace_id}"]
    if root.name == "event":
        lines.append(
            f"caused by {attributes.get('tickd.event_id', '?')}"
            f" from {attributes.get('tickd.source', '?')}"
        )
    lines += [f"  fed also by {k.attributes.get('tickd.event_id', k.trace_id)}" for k in root.links]
    lines.append(f"{'stage':<10}{'starts at':>14}{'took':>12}{'waited':>12}  detail")
    previous_end = origin
    for span in spans:
        if span is root:
            lines.append(
                f"{'receive':<10}{_ms(0):>14}{'':>12}{'':>12}  {attributes.get('tickd.kind', '')}"
            )
            continue
        waited = span.start_ns - previous_end
        lines.append(
            f"{span.name:<10}{'+' + _ms(span.start_ns - origin):>14}"
            f"{_ms(span.end_ns - span.start_ns):>12}{_ms(waited) if waited > 0 else '':>12}"
            f"  {_detail(span)}"
        )
        previous_end = max(previous_end, span.end_ns)
    lines.append(f"total     {_ms(previous_end - origin):>14}  receive -> last stage")
    return lines


def _detail(span: SpanRecord) -> str:
    a = span.attributes
    parts = [
        str(a[key])
        for key in ("tickd.strategy", "tickd.intent", "tickd.status", "tickd.event", "tickd.qty")
        if a.get(key)
    ]
    if "tickd.price" in a:
        parts.append(f"@ {a['tickd.price']}")
    if span.error:
        parts.append(f"error: {span.error}")
    if "tickd.frames" in a:
        parts.append(f"pass over {a['tickd.frames']} queued frame(s)")
    return " ".join(parts)


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms"


def trace_command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    if args.file:
        path = Path(args.file)
    else:
        try:
            path = trace_file(load(args.config))
        except ConfigError as exc:
            print(f"tickd: bad configuration: {exc}", file=sys.stderr)
            return EX_CONFIG
    if not path.exists():
        print(f'tickd: no trace file at {path} (is [tracing] exporter "file"?)', file=sys.stderr)
        return EX_NOINPUT
    spans, bad = read_spans(path)
    if bad:
        print(f"tickd: {bad} lines of {path} did not decode (skipped)", file=sys.stderr)
    found = chain(spans, args.order_id)
    if not found:
        print(
            f"tickd: no span names order {args.order_id} in {path} ({len(spans)} spans read)",
            file=sys.stderr,
        )
        return EX_NOT_FOUND
    if args.json:
        out(msgspec.json.encode(found).decode())
    else:
        for line in format_chain(found, args.order_id):
            out(line)
    return 0
