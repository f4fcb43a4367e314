"""The daemon's metrics: counters and per-stage latencies, read from the graph when asked.

Nothing here runs per event. The graph counts what it does anyway (feed and mailbox stats, the
bus's ``published`` and ``unrouted``, the broker actor's outcomes, the supervisor's restarts) and
keeps its latencies in fixed-memory :class:`LatencyHistogram` s; this module reads them at
collection time, for four readers: OpenTelemetry observable instruments (exported every
``metrics.interval`` seconds), :meth:`Metrics.snapshot` (plain data), a periodic
``metrics_summary`` log line and the service manager's status text.

Latencies are not an OpenTelemetry ``Histogram``: its synchronous ``record`` costs about 9 us
here, more than decoding the message it would time. They are exported as gauges of the
percentiles tickd's own histograms compute (p50/p90/p99/max, microseconds) with a counter of
their records: a summary, not mergeable buckets, at no cost on the hot path.

The exporter's thread runs the callbacks while the event loop keeps counting, so every
``Counter`` is copied (``dict(counter)``: one C call, kept whole by the GIL) before it is read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from .clock import Clock
from .feeds.polling import PollStats
from .latency import LatencyHistogram
from .risk import RiskState

if TYPE_CHECKING:
    from .app import App, Feed
    from .tracing import Tracing

__all__ = ["Metrics"]

_log = structlog.get_logger("tickd.metrics")

_QUANTILES = ("p50", "p90", "p99", "max")  # as LatencyHistogram.summary() names them, minus _us


class Metrics:
    """The metrics of ``app``: ``tracing`` is its tracer (None when tracing is off); ``reader``
    replaces the exporter the config names (tests: an ``InMemoryMetricReader``)."""

    def __init__(
        self, app: App, tracing: Tracing | None, reader: MetricReader | None = None
    ) -> None:
        self.app = app
        self.tracing = tracing
        config = app.config
        if reader is None and config.metrics.exporter != "none":
            exporter: MetricExporter = (
                OTLPMetricExporter(config.metrics.otlp_endpoint)
                if config.metrics.exporter == "otlp"
                else ConsoleMetricExporter()
            )
            reader = PeriodicExportingMetricReader(
                exporter, export_interval_millis=config.metrics.interval * 1000
            )
        tickd = version("tickd")
        resource = Resource.create(
            {"service.name": config.tracing.service_name, "service.version": tickd}
        )
        # Its own provider, not the global one: a test's App and its metrics go away together.
        # shutdown_on_exit=False: shutdown() is called by the App, and an atexit hook would keep
        # every App ever built alive.
        self.provider = MeterProvider(
            metric_readers=[reader] if reader is not None else [],
            resource=resource,
            shutdown_on_exit=False,
        )
        meter = self.provider.get_meter("tickd", tickd)
        for name, counter in _COUNTERS.items():
            meter.create_observable_counter(
                f"tickd.{name}",
                [self._observe(counter)],
                unit=counter.unit,
                description=counter.description,
            )
        meter.create_observable_gauge(
            "tickd.stage.latency",
            [self._latencies],
            unit="us",
            description="per-stage latency percentiles (attribute quantile), from tickd's own "
            "histograms",
        )
        meter.create_observable_counter(
            "tickd.stage.count",
            [self._stage_counts],
            unit="{record}",
            description="latencies recorded per stage",
        )
        total = self._received()
        self._summary_rate = _Rate(app.clock, total)
        self._status_rate = _Rate(app.clock, total)

    def stages(self) -> dict[str, LatencyHistogram]:
        """Every latency kept: the traced stages and each actor's handle time (``actor.NAME``)."""
        found = dict(self.tracing.stages) if self.tracing is not None else {}
        for actor in self.app.actors:
            found[f"actor.{actor.name}"] = actor.handle_time
        return found

    def snapshot(self) -> dict[str, Any]:
        """The exported numbers as plain data: each counter by its attribute's value, and
        ``stages``: each stage's :meth:`LatencyHistogram.summary`."""
        data: dict[str, Any] = {name: c.read(self) for name, c in _COUNTERS.items()}
        data["stages"] = {stage: h.summary() for stage, h in self.stages().items()}
        return data

    def summary_line(self) -> None:
        """Log ``metrics_summary``: totals, the message rate since the previous line, and p50/p99
        of the main stages (the traced ones; the actors' when tracing is off)."""
        snap = self.snapshot()
        total = {name: sum(snap[name].values()) for name in _COUNTERS}
        main = {
            stage: {"p50": s["p50_us"], "p99": s["p99_us"]}
            for stage, s in snap["stages"].items()
            if s["n"] and stage.startswith("actor.") == (self.tracing is None)
        }
        _log.info(
            "metrics_summary",
            messages=total["messages"],
            received=self._received(),
            msgs_per_s=self._summary_rate(self._received()),
            frames=total["frames"],
            decode_errors=total["decode_errors"],
            dropped_frames=total["dropped_frames"],
            protocol_errors=total["protocol_errors"],
            dropped=total["dropped"],
            conflated=total["conflated"],
            reconnects=total["reconnects"],
            gaps=total["gaps"],
            orders=snap["orders"],
            restarts=total["restarts"],
            unrouted=total["unrouted"],
            strategy_errors=total["strategy_errors"],
            traced=snap["tracing"],
            latency_us=main,
        )

    def status_text(self) -> str:
        """One short line for the service manager's STATUS=, e.g. ``ready · 1234 msg/s · 3 orders
        · p99 decision 850 us · 0 errors``, and the latest feed gap. Errors: decode and protocol
        errors, actor restarts, strategy errors and orders whose fate the broker left unknown."""
        parts = ["ready" if self.app.ready else "starting"]
        if self.app.broker is not None and self.app.risk.state != RiskState.ACTIVE:
            parts.append(f"risk {self.app.risk.state}")
        parts.append(f"{self._status_rate(self._received()):.0f} msg/s")
        orders = _orders(self)
        if orders:
            parts.append(f"{orders['sent']} orders")
        decision = self.tracing.stages.get("decision") if self.tracing is not None else None
        if decision is not None and decision.count:
            parts.append(f"p99 decision {decision.percentile(99) / 1000:.0f} us")
        errors = sum(
            self._total(n)
            for n in ("decode_errors", "protocol_errors", "restarts", "strategy_errors")
        )
        errors += orders.get("unavailable", 0) + orders.get("error", 0)
        parts.append(f"{errors} errors")
        gaps = [g for f in self.app.feeds if (g := getattr(f, "last_gap", None)) is not None]
        if gaps:
            gap = max(gaps, key=lambda g: g.end_ns)
            at = dt.datetime.fromtimestamp(gap.end_ns / 1e9, dt.UTC).strftime("%H:%M:%SZ")
            seconds = (gap.end_ns - gap.start_ns) / 1e9
            parts.append(f"last gap {at} ({seconds:.1f} s, {gap.source})")
        return " · ".join(parts)

    async def run(self) -> None:
        """Log :meth:`summary_line` every ``log.summary_interval`` seconds (0: never)."""
        interval = self.app.config.log.summary_interval
        if not interval:
            return
        while True:
            await self.app.clock.sleep(interval)
            self.summary_line()

    def shutdown(self) -> None:
        """A last summary line, then a last export and the exporter's end (this blocks up to the
        exporter's timeout: call it once the graph has stopped)."""
        self.summary_line()
        self.provider.shutdown()

    def _received(self) -> int:
        """Data messages the feeds published (the rate's base: the bus also carries what the
        graph makes of them, snapshots, intents, orders)."""
        return sum(_feed_counts(f).get("messages", 0) for f in self.app.feeds)

    def _total(self, name: str) -> int:
        return sum(_COUNTERS[name].read(self).values())

    def _feeds(self, field: str) -> dict[str, int]:
        return {
            f.source: n for f in self.app.feeds if (n := _feed_counts(f).get(field)) is not None
        }

    def _observe(self, counter: _Counter) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> list[Observation]:
            return [Observation(n, {counter.attribute: k}) for k, n in counter.read(self).items()]

        return observe

    def _latencies(self, _: CallbackOptions) -> list[Observation]:
        return [
            Observation(summary[f"{q}_us"], {"stage": stage, "quantile": q})
            for stage, histogram in self.stages().items()
            if histogram.count  # no records, no percentiles (not zeros)
            for summary in (histogram.summary(),)
            for q in _QUANTILES
        ]

    def _stage_counts(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(h.count, {"stage": s}) for s, h in self.stages().items()]


class _Rate:
    """Messages per second since the previous call: each reader keeps its own, so the status
    text, asked any time, does not shorten the summary line's interval."""

    def __init__(self, clock: Clock, total: int) -> None:
        self._clock = clock
        self._ns = clock.monotonic_ns()
        self._total = total

    def __call__(self, total: int) -> float:
        now = self._clock.monotonic_ns()
        elapsed, counted = now - self._ns, total - self._total
        self._ns, self._total = now, total
        return round(counted * 1e9 / elapsed, 1) if elapsed > 0 else 0.0


class _Counter(NamedTuple):
    attribute: str  # what tells its series apart
    unit: str
    description: str
    read: Callable[[Metrics], dict[str, int]]


def _feed_counts(feed: Feed) -> dict[str, int]:
    """A feed's counters by metric name (a news poller has no frames, connections nor gaps)."""
    stats = feed.stats
    if isinstance(stats, PollStats):
        return {"decode_errors": stats.decode_errors, "messages": stats.published}
    return {
        "messages": stats.messages,
        "frames": stats.frames,
        "decode_errors": stats.decode_errors,
        "dropped_frames": stats.dropped_frames,
        "protocol_errors": stats.protocol_errors,
        "reconnects": max(stats.connects - 1, 0),
        "gaps": stats.gaps,
    }


def _orders(metrics: Metrics) -> dict[str, int]:
    """Order intents by outcome, when trading: at the broker (sent, rejected, unavailable,
    error) or before it (denied by risk)."""
    app = metrics.app
    if app.broker is None:
        return {}
    failed = dict(app.broker_actor.failed)
    return {
        "sent": app.broker_actor.sent,
        **{outcome: failed.get(outcome, 0) for outcome in ("rejected", "unavailable", "error")},
        "denied": sum(dict(app.risk.denied).values()),
    }


def _restarts(metrics: Metrics) -> dict[str, int]:
    restarts = dict(metrics.app.supervisor.restarts)  # only the actors that crashed
    return {a.name: restarts.get(a.name, 0) for a in metrics.app.actors}


def _tracing(metrics: Metrics) -> dict[str, int]:
    tracing = metrics.tracing
    if tracing is None:
        return {}
    return {"sampled": tracing.sampled, "breaches": tracing.breaches, "spans": tracing.spans}


_COUNTERS: dict[str, _Counter] = {
    "frames": _Counter(
        "source", "{frame}", "websocket frames received", lambda m: m._feeds("frames")
    ),
    "messages": _Counter(
        "kind", "{message}", "events published on the bus", lambda m: dict(m.app.bus.published)
    ),
    "decode_errors": _Counter(
        "source",
        "{error}",
        "frames or messages that did not decode",
        lambda m: m._feeds("decode_errors"),
    ),
    "dropped_frames": _Counter(
        "source",
        "{frame}",
        "frames dropped: the feed's raw queue was full",
        lambda m: m._feeds("dropped_frames"),
    ),
    "protocol_errors": _Counter(
        "source",
        "{connection}",
        "connections closed because the server broke the websocket protocol",
        lambda m: m._feeds("protocol_errors"),
    ),
    "reconnects": _Counter(
        "source", "{connection}", "connections after the first", lambda m: m._feeds("reconnects")
    ),
    "gaps": _Counter(
        "source", "{gap}", "spans without data after a lost connection", lambda m: m._feeds("gaps")
    ),
    "conflated": _Counter(
        "mailbox",
        "{message}",
        "messages replaced by a newer one with the same key",
        lambda m: {a.mailbox.name: a.mailbox.stats.conflated for a in m.app.actors},
    ),
    "dropped": _Counter(
        "mailbox",
        "{message}",
        "messages pushed out of a full conflating mailbox",
        lambda m: {a.mailbox.name: a.mailbox.stats.dropped for a in m.app.actors},
    ),
    "orders": _Counter("outcome", "{order}", "order intents by outcome", _orders),
    "restarts": _Counter(
        "actor",
        "{restart}",
        "actor restarts after a crash",
        _restarts,
    ),
    "unrouted": _Counter(
        "kind", "{message}", "events no mailbox asked for", lambda m: dict(m.app.bus.unrouted)
    ),
    "strategy_errors": _Counter(
        "strategy",
        "{error}",
        "strategy calls that raised",
        lambda m: dict(m.app.host.errors) if m.app.broker is not None else {},
    ),
    "tracing": _Counter(
        "counter",
        "1",
        "events traced as a sample (sampled) or for a latency budget breach (breaches), spans",
        _tracing,
    ),
}
