"""Where spans go (config ``[tracing] exporter``), and the JSON-lines file ``tickd trace`` reads.

* ``file``: one JSON object per span and line (:class:`SpanRecord`), appended to
  ``<state_dir>/traces.jsonl`` unless ``file`` says otherwise; past ``max_mb`` the file is renamed
  to ``<file>.1`` (replacing the one before) and a new one begun, so the pair stays bounded;
* ``otlp``: OTLP over HTTP (protobuf) to a collector at ``otlp_endpoint``;
* ``console``: the SDK's console exporter, on stderr (stdout is the log stream);
* ``none``: stamps and latency histograms only.

All but ``none`` sit behind the SDK's batch processor: spans are written by its thread, never by
the event loop.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import StatusCode

from .config import Config, TracingConfig, state_dir

__all__ = [
    "JsonLinesSpanExporter",
    "LinkRecord",
    "SpanRecord",
    "make_processor",
    "read_spans",
    "resource_for",
    "trace_file",
]


class LinkRecord(msgspec.Struct, frozen=True, kw_only=True):
    trace_id: str
    span_id: str
    attributes: dict[str, Any] = {}


class SpanRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One span as the file holds it: ids in hex, times in ns since the epoch."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = {}
    links: tuple[LinkRecord, ...] = ()
    status: str = "unset"  # ok, error, unset
    error: str | None = None


def _record(span: ReadableSpan) -> SpanRecord:
    context = span.get_span_context()
    assert context is not None  # spans tickd builds always have one
    status = span.status
    return SpanRecord(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        attributes=dict(span.attributes or {}),
        links=tuple(
            LinkRecord(
                trace_id=f"{link.context.trace_id:032x}",
                span_id=f"{link.context.span_id:016x}",
                attributes=dict(link.attributes or {}),
            )
            for link in span.links
        ),
        status=status.status_code.name.lower(),
        error=status.description if status.status_code is StatusCode.ERROR else None,
    )


class JsonLinesSpanExporter(SpanExporter):
    """Appends spans as JSON lines; rotates to ``<path>.1`` past ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._encoder = msgspec.json.Encoder()
        self._lock = threading.Lock()  # export and shutdown may come from two threads
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = b"".join(self._encoder.encode(_record(s)) + b"\n" for s in spans)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            try:
                if self._file.tell() + len(lines) > self.max_bytes and self._file.tell():
                    self._file.close()
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    self._file = self.path.open("ab")
                self._file.write(lines)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE  # the SDK logs it; tracing never stops trading
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is flushed


def trace_file(config: Config) -> Path:
    """The file exporter's path for ``config``."""
    return Path(config.tracing.file) if config.tracing.file else state_dir(config) / "traces.jsonl"


def resource_for(settings: TracingConfig) -> Resource:
    return Resource.create(
        {
            "service.name": settings.service_name,
            "service.version": version("tickd"),
            "process.pid": os.getpid(),
        }
    )


def make_processor(config: Config) -> BatchSpanProcessor | None:
    """The span processor ``config`` asks for (None for ``exporter = "none"``)."""
    settings = config.tracing
    exporter: SpanExporter
    if settings.exporter == "none":
        return None
    if settings.exporter == "file":
        exporter = JsonLinesSpanExporter(trace_file(config), int(settings.max_mb * 2**20))
    elif settings.exporter == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    return BatchSpanProcessor(exporter, schedule_delay_millis=1000)


def read_spans(path: Path) -> tuple[list[SpanRecord], int]:
    """The spans of ``path`` and of its rotated predecessor (oldest first), and how many lines
    did not decode (a torn last line after a crash, say): counted, for the caller to report."""
    decoder = msgspec.json.Decoder(SpanRecord)
    spans: list[SpanRecord] = []
    bad = 0
    for name in (path.with_name(path.name + ".1"), path):
        try:
            file = name.open("rb")
        except FileNotFoundError:
            continue
        with file:
            for line in file:
                try:
                    spans.append(decoder.decode(line))
                except msgspec.DecodeError:
                    bad += 1
    return spans, bad
