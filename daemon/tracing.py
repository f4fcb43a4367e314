"""Per-event tracing: stamps on the hot path, OpenTelemetry spans built after the fact.

A span made by the SDK's tracer costs about 20 us here, twenty times the decode of the message it
would describe, so none is made per tick. Every event carries its frame's receive stamp
(``ts_recv``); each stage stamps a time where it already works per batch: the feed per pass over
its queued frames (decode start and end, kept in a bounded ring with the receive stamps of the
pass's frames), the indicator actor per bank call (:class:`~tickd.daemon.indicators.IndicatorBatch`
carries its start and end), the strategy host per pass and per decision, risk per intent, the
broker per order, risk again per order update. The stamps also give each stage's latency, the
event's age (since its frame was received) when the stage is done with it: appended to a list on
the hot path and folded into a fixed-memory histogram per stage (``stages``) once a second.

Spans are built from the stamps, with explicit start and end times, only for:

* every event that led to an order intent: the chain event -> decode -> bank -> strategy -> risk
  -> submit -> ack -> fill in one trace, linked to the other events that fed the same bank call;
* every event that breached the latency budget (receive to the end of its last stage), up to
  ``_BREACHES_PER_SECOND`` traces a second (all are counted);
* a rate-limited sample of the rest (``sample_per_second``).

An event's trace id is a hash of its id (:func:`~tickd.strategies.base.event_id`) and the state
directory's salt: fixed from the moment it is received, with no work per event, so a log line
about it can carry the id, a replay of a tape names the same traces, and a link to an event that
was never exported still names the right trace. Spans are handed to the SDK's span processor as
finished :class:`~opentelemetry.sdk.trace.ReadableSpan` objects (about 3 us each): the SDK's tracer
would pick its own ids and read a clock we have already read.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags

from tickd.codecs.schema import OrderUpdate

from .config import TracingConfig
from .latency import LatencyHistogram
from .logs import redact

if TYPE_CHECKING:
    from tickd.strategies.base import OrderIntent

__all__ = ["STAGES", "FrameStamp", "Tracing", "now_ns", "trace_ids"]

# Per-stage latency: the event's age when the stage is done with it; "decision" is its age at
# the end of the last stage a market event goes through (the strategies, or the bank).
STAGES: Final = ("decode", "bank", "strategy", "risk", "submit", "ack", "fill", "decision")
_PASSES: Final = 4096  # the feeds' passes whose stamps are kept (for the traces made later)
_BREACHES_PER_SECOND: Final = 10
_LINKS: Final = 8  # the most events linked to one decision
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("tickd")
_ACK_EVENTS = frozenset({"new", "accepted", "pending_new"})
_FILL_EVENTS = frozenset({"fill", "partial_fill"})
_DONE_EVENTS = frozenset({"canceled", "expired", "rejected", "done_for_day", "replaced"})


class FrameStamp(NamedTuple):
    """One frame's stamps (process wall-clock ns): received, and the feed's pass over the queued
    frames it was in (decode and hand-off to the bus) started and ended; ``frames`` in the pass."""

    source: str
    received_ns: int
    decode_start_ns: int
    decode_end_ns: int
    frames: int


class _Decision(NamedTuple):
    """What the strategy host knew when it decided: the rest of the chain comes later."""

    event: Any
    frame: FrameStamp | None
    bank: tuple[int, int] | None
    strategy_start_ns: int
    strategy_end_ns: int
    links: tuple[str, ...]


class _Order:
    """An approved order's place in its trace, until the venue says it is done."""

    __slots__ = (
        "ack_ns",
        "acked",
        "done",
        "parent",
        "received_ns",
        "returned",
        "start_ns",
        "submit_id",
        "submit_ns",
        "trace_id",
    )

    def __init__(self, trace_id: int, parent: int, start_ns: int, received_ns: int) -> None:
        self.trace_id = trace_id
        self.parent = parent  # the risk span
        self.start_ns = start_ns  # when risk approved it
        self.received_ns = received_ns  # the frame of the event it was decided on
        self.submit_ns = 0
        self.submit_id = 0
        self.ack_ns = 0
        self.acked = False  # its ack span exists (pending_new, then new: one span)
        self.returned = False  # the broker's call came back (its submit span exists)
        self.done = False  # the venue finished it: forgotten once the call is back too


def trace_ids(salt: str, event: str) -> tuple[int, int]:
    """The trace id and root span id of the event named ``event`` (never zero)."""
    digest = hashlib.blake2b(f"trace\x1f{salt}\x1f{event}".encode(), digest_size=24).digest()
    return int.from_bytes(digest[:16]) or 1, int.from_bytes(digest[16:]) or 1


def _name(event: Any) -> str:
    from tickd.strategies.base import event_id  # on use: it loads numba, which a feed need not

    return event_id(event)


def _span_id(trace_id: int, *parts: str) -> int:
    key = "\x1f".join((f"{trace_id:032x}", *parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest()) or 1


class Tracing:
    """The stamps, the stage histograms and the spans of one daemon (see the module).

    ``processor`` receives the finished spans (``None``: stamps and histograms only, no spans).
    Counters: ``spans`` exported, ``sampled`` and ``breaches`` (events over the budget; at most
    ``_BREACHES_PER_SECOND`` of them traced a second, the rest in ``breaches_untraced``).
    """

    def __init__(
        self,
        settings: TracingConfig,
        salt: str,
        processor: SpanProcessor | None = None,
        resource: Resource | None = None,
        frames: int = 1 << 16,
    ) -> None:
        self.salt = salt
        self.processor = processor
        self.resource = resource or Resource.create({"service.name": settings.service_name})
        self.budget_ns = round(settings.latency_budget_ms * 1e6)
        self._sample_every_ns = (
            round(1e9 / settings.sample_per_second) if settings.sample_per_second else 0
        )
        self._next_sample_ns = 0
        self._breach_window = (0, 0)  # (second, traces made in it)
        self.stages = {stage: LatencyHistogram() for stage in STAGES}
        self._pending: dict[str, list[int]] = {stage: [] for stage in STAGES}
        self._decode, self._bank = self._pending["decode"], self._pending["bank"]
        self._strategy, self._whole = self._pending["strategy"], self._pending["decision"]
        self._folded_ns = 0
        self.spans = 0
        self.sampled = 0
        self.breaches = 0
        self.breaches_untraced = 0
        # The feeds' latest passes: (source, receive stamps of its frames, start, end).
        self._passes: list[tuple[str, list[int], int, int] | None] = [None] * _PASSES
        self._at = 0
        self._decisions: OrderedDict[tuple[str, str, str], _Decision] = OrderedDict()
        self._orders: OrderedDict[str, _Order] = OrderedDict()
        self._emitted: OrderedDict[int, None] = OrderedDict()  # traces whose event spans exist
        # The events decided on in the strategy pass under way: its end (a sample, a budget
        # breach) leaves them to risk, whose trace of the decision carries the links.
        self._deciding: set[str] = set()

    # --- stamps (the hot path) ---------------------------------------------------------------

    def decoded(self, source: str, received: list[int], start_ns: int, end_ns: int) -> None:
        """A feed's pass over queued frames (``received``: their receive stamps, in order) ran
        from ``start_ns`` to ``end_ns``: decoded, and handed to the bus."""
        at = self._at
        self._passes[at] = (source, received, start_ns, end_ns)
        self._at = at + 1 if at + 1 < _PASSES else 0
        if received:
            self._decode.append(end_ns - received[0])
        if end_ns - self._folded_ns > 1_000_000_000:
            self.fold()

    def frame_of(self, event: Any) -> FrameStamp | None:
        """The stamps of the frame ``event`` came in (None once its pass has left the ring).
        A look back through the ring: made only for the few events that get a trace."""
        ts = getattr(event, "ts_recv", 0)
        passes, at = self._passes, self._at
        for i in range(_PASSES):
            found = passes[at - 1 - i]  # newest first (index -1 wraps around)
            if found is None:
                return None
            source, received, start, end = found
            if ts in received:
                return FrameStamp(source, ts, start, end, len(received))
        return None

    def banked(self, events: Sequence[Any], end_ns: int) -> None:
        """One bank call ended: its latency is the age of its oldest event."""
        if events:
            self._bank.append(end_ns - events[0].ts_recv)

    def finished(
        self,
        groups: Sequence[tuple[Sequence[Any], tuple[int, int] | None]],
        end_ns: int,
        strategy: tuple[int, int] | None = None,
    ) -> None:
        """The last stage is done with a pass's events: ``groups`` of events in receive order,
        each with the bank call that took them (start, end) or None. Note their age, trace those
        over the latency budget and, when one is due, a sample."""
        sample: tuple[Any, tuple[int, int] | None] | None = None
        for events, bank in groups:
            if not events:
                continue
            age = end_ns - events[0].ts_recv
            if strategy is not None:
                self._strategy.append(age)
            self._whole.append(age)
            if age > self.budget_ns:
                self._breached(events, end_ns, bank, strategy)
            sample = (events[-1], bank)
        if sample is not None and self._sample_every_ns and end_ns >= self._next_sample_ns:
            self._next_sample_ns = end_ns + self._sample_every_ns
            event, bank = sample
            self.sampled += 1
            self._event_trace(event, self.frame_of(event), bank, strategy, "sampled", end_ns)
        self._deciding.clear()
        if end_ns - self._folded_ns > 1_000_000_000 or len(self._whole) > 4096:
            self.fold()

    def fold(self) -> None:
        """Fold the latencies noted since the last fold into ``stages`` (once a second on the
        event loop; the metrics exporter's thread only reads the histograms)."""
        for stage, pending in self._pending.items():
            if pending:
                self.stages[stage].record_many(pending)
                pending.clear()
        self._folded_ns = now_ns()

    def _breached(
        self,
        events: Sequence[Any],
        end_ns: int,
        bank: tuple[int, int] | None,
        strategy: tuple[int, int] | None,
    ) -> None:
        """Count the events received before ``end_ns - budget`` and trace the first few. They
        are a prefix: events arrive in receive order, so a backlog costs a bisection, not a
        look per event, just when the daemon is behind."""
        deadline = end_ns - self.budget_ns
        count = bisect.bisect_left(events, True, key=lambda e: e.ts_recv >= deadline)
        self.breaches += count
        second, traced = self._breach_window
        if end_ns // 10**9 != second:
            second, traced = end_ns // 10**9, 0
        chosen = events[: min(count, max(0, _BREACHES_PER_SECOND - traced))]
        for event in chosen:
            self._event_trace(event, self.frame_of(event), bank, strategy, "latency_budget", end_ns)
        self.breaches_untraced += count - len(chosen)
        self._breach_window = (second, traced + len(chosen))

    # --- the decision chain -----------------------------------------------------------------

    def decided(
        self,
        intents: Sequence[OrderIntent],
        event: Any,
        bank: tuple[int, int] | None,
        strategy_start_ns: int,
        strategy_end_ns: int,
        links: Sequence[Any] = (),
    ) -> None:
        """The strategy host turned ``event`` into ``intents``; ``links`` are the other events
        that fed the values it decided on (the same bank call, the same symbol)."""
        self._deciding.add(_name(event))
        decision = _Decision(
            event,
            self.frame_of(event),
            bank,
            strategy_start_ns,
            strategy_end_ns,
            tuple(_name(e) for e in links[-_LINKS:]),
        )
        for intent in intents:
            self._decisions[intent.strategy, intent.event_id, intent.symbol] = decision
        while len(self._decisions) > 10_000:  # risk lost them (a crash): keep memory bounded
            self._decisions.popitem(last=False)

    def context(self, intent: OrderIntent, stage: str = "risk") -> dict[str, str]:
        """``trace_id`` and ``span_id`` (hex) of ``intent``'s ``stage`` (``strategy`` or
        ``risk``), for the log lines of that stage."""
        trace_id, _ = trace_ids(self.salt, intent.event_id)
        span = _span_id(trace_id, stage, intent.strategy, intent.symbol)
        return {"trace_id": f"{trace_id:032x}", "span_id": f"{span:016x}"}

    def order_context(self, client_order_id: str) -> dict[str, str]:
        """``trace_id`` and ``span_id`` of an order's broker stage ({} if not traced)."""
        order = self._orders.get(client_order_id)
        if order is None:
            return {}
        span = _span_id(order.trace_id, "submit", client_order_id)
        return {"trace_id": f"{order.trace_id:032x}", "span_id": f"{span:016x}"}

    def forget(self, intent: OrderIntent) -> None:
        """Risk dropped ``intent`` unjudged (the same decision again: one order): its chain ends
        here, and its stamps must not wait for a judgement that never comes."""
        self._decisions.pop((intent.strategy, intent.event_id, intent.symbol), None)

    def risk(
        self,
        intent: OrderIntent,
        client_order_id: str,
        start_ns: int,
        end_ns: int,
        denied: str | None,
    ) -> None:
        """Risk approved ``intent`` as ``client_order_id``, or ``denied`` it (the reason): the
        chain so far becomes spans now (a denial ends it)."""
        decision = self._decisions.pop((intent.strategy, intent.event_id, intent.symbol), None)
        if intent.ts_recv:  # (a strategy that left it 0 has no age to give)
            self._pending["risk"].append(end_ns - intent.ts_recv)
        trace_id, root = trace_ids(self.salt, intent.event_id)
        parent = root
        if decision is not None:
            links = [self._link(e) for e in decision.links]
            self._event_trace(
                decision.event, decision.frame, decision.bank, None, "decision", end_ns, links
            )
            parent = _span_id(trace_id, "strategy", intent.strategy, intent.symbol)
            self._emit(
                "strategy",
                trace_id,
                parent,
                root,
                decision.strategy_start_ns,
                decision.strategy_end_ns,
                {
                    "tickd.stage": "strategy",
                    "tickd.strategy": intent.strategy,
                    "tickd.symbol": intent.symbol,
                    "tickd.intent": f"{intent.side} {intent.qty} {intent.type}",
                    "tickd.reason": intent.reason,
                },
            )
        span = _span_id(trace_id, "risk", intent.strategy, intent.symbol)
        attributes = {
            "tickd.stage": "risk",
            "tickd.strategy": intent.strategy,
            "tickd.symbol": intent.symbol,
            "tickd.client_order_id": client_order_id,
            "tickd.approved": denied is None,
        }
        if denied is not None:
            denied = redact(denied)
            attributes["tickd.denied"] = denied
        self._emit("risk", trace_id, span, parent, start_ns, end_ns, attributes, error=denied)
        if denied is None:
            self._orders[client_order_id] = _Order(trace_id, span, end_ns, intent.ts_recv)
            while len(self._orders) > 10_000:
                self._orders.popitem(last=False)

    def submitting(self, client_order_id: str, start_ns: int) -> None:
        """The broker actor is about to send ``client_order_id``: what the venue says about it
        from now on (its ack may beat the call's return) belongs under the submit span."""
        order = self._orders.get(client_order_id)
        if order is not None:
            order.submit_ns = start_ns
            order.submit_id = _span_id(order.trace_id, "submit", client_order_id)

    def submitted(
        self,
        client_order_id: str,
        end_ns: int,
        order_id: str = "",
        status: str = "",
        error: str | None = None,
        final: bool = True,
    ) -> None:
        """The broker's call for ``client_order_id`` returned at ``end_ns`` (the venue's answer
        to the request) or failed with ``error``: the order's end when ``final``, not when its
        fate is unknown."""
        order = self._orders.get(client_order_id)
        if order is None or not order.submit_id:
            return
        if order.received_ns:
            self._pending["submit"].append(end_ns - order.received_ns)
        order.ack_ns = max(order.ack_ns, end_ns)
        attributes: dict[str, Any] = {
            "tickd.stage": "submit",
            "tickd.client_order_id": client_order_id,
        }
        if order_id:
            attributes["tickd.order_id"] = order_id
        if status:
            attributes["tickd.status"] = status
        self._emit(
            "submit",
            order.trace_id,
            order.submit_id,
            order.parent,
            order.submit_ns,
            end_ns,
            attributes,
            error=error,
        )
        order.returned = True
        # An error that leaves the order's fate unknown is not its end: the venue may have it,
        # and its ack and fills still belong here.
        if (error is not None and final) or order.done:
            del self._orders[client_order_id]

    def updated(self, update: OrderUpdate, now_ns: int) -> None:
        """An order update reached the portfolio at ``now_ns``: the venue's ack, a fill, or the
        end of the order."""
        coid = update.order.client_order_id
        order = self._orders.get(coid)
        if order is None:
            return
        kind = update.event
        base: dict[str, Any] = {"tickd.client_order_id": coid, "tickd.order_id": update.order.id}
        start = order.submit_ns or order.start_ns
        parent = order.submit_id or order.parent
        # The first word that the venue has the order is its ack, once: "new" as a rule, but a
        # venue that fills at once may have a fill (the broker's own, from the order's answer)
        # arrive before the stream's "new".
        if not order.acked and (kind in _ACK_EVENTS or kind in _FILL_EVENTS):
            order.acked = True
            if order.received_ns:
                self._pending["ack"].append(now_ns - order.received_ns)
            span = _span_id(order.trace_id, "ack", coid)
            attributes = {**base, "tickd.stage": "ack", "tickd.event": kind}
            self._emit("ack", order.trace_id, span, parent, start, now_ns, attributes)
            order.ack_ns = max(order.ack_ns, now_ns)
        if kind in _FILL_EVENTS:
            start = max(order.ack_ns, start)
            if order.received_ns:
                self._pending["fill"].append(now_ns - order.received_ns)
            attributes = {
                **base,
                "tickd.stage": "fill",
                "tickd.event": kind,
                "tickd.qty": str(update.qty),
                "tickd.price": str(update.price),
                "tickd.execution_id": update.execution_id or "",
            }
            span = _span_id(order.trace_id, "fill", coid, update.execution_id or str(now_ns))
            self._emit("fill", order.trace_id, span, parent, start, now_ns, attributes)
        if kind in _DONE_EVENTS or update.order.status in ("filled", *_DONE_EVENTS):
            # A fast venue fills before the broker's call returns: the submit span still comes.
            order.done = True
            if order.returned or not order.submit_id:
                del self._orders[coid]
            if kind in _DONE_EVENTS:
                attributes = {**base, "tickd.stage": "done", "tickd.event": kind}
                span = _span_id(order.trace_id, "done", coid)
                start = max(order.ack_ns, start)
                self._emit("done", order.trace_id, span, parent, start, now_ns, attributes)

    # --- spans -------------------------------------------------------------------------------

    def _event_trace(
        self,
        event: Any,
        frame: FrameStamp | None,
        bank: tuple[int, int] | None,
        strategy: tuple[int, int] | None,
        reason: str,
        end_ns: int,
        links: Sequence[Link] = (),
    ) -> None:
        """The event's root span and its stages up to the decision, once per trace."""
        if self.processor is None:
            return
        name = _name(event)
        trace_id, root = trace_ids(self.salt, name)
        if root in self._emitted or (reason != "decision" and name in self._deciding):
            return
        self._emitted[root] = None
        if len(self._emitted) > 4096:
            self._emitted.popitem(last=False)
        start = frame.received_ns if frame is not None else getattr(event, "ts_recv", end_ns)
        attributes: dict[str, Any] = {
            "tickd.stage": "event",
            "tickd.event_id": name,
            "tickd.kind": type(event).__name__,
            "tickd.trace_reason": reason,
            "tickd.ts_event": getattr(event, "ts_event", None) or 0,
        }
        symbol = getattr(event, "symbol", None)
        if symbol is not None:
            attributes["tickd.symbol"] = symbol
        if frame is not None:
            attributes["tickd.source"] = frame.source
        self._emit("event", trace_id, root, None, start, end_ns, attributes, links=links)
        if frame is not None:
            self._emit(
                "decode",
                trace_id,
                _span_id(trace_id, "decode"),
                root,
                frame.decode_start_ns,
                frame.decode_end_ns,
                {"tickd.stage": "decode", "tickd.frames": frame.frames},
            )
        if bank is not None:
            self._emit(
                "bank", trace_id, _span_id(trace_id, "bank"), root, *bank, {"tickd.stage": "bank"}
            )
        if strategy is not None:
            self._emit(
                "strategy",
                trace_id,
                _span_id(trace_id, "strategies"),
                root,
                *strategy,
                {"tickd.stage": "strategy"},
            )

    def _link(self, name: str) -> Link:
        trace_id, root = trace_ids(self.salt, name)
        context = SpanContext(trace_id, root, is_remote=False, trace_flags=_SAMPLED)
        return Link(context, {"tickd.event_id": name})

    def _emit(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        parent: int | None,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any],
        links: Sequence[Link] = (),
        error: str | None = None,
    ) -> None:
        if self.processor is None:
            return
        context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
        parent_context = (
            None
            if parent is None
            else SpanContext(trace_id, parent, is_remote=False, trace_flags=_SAMPLED)
        )
        # An error's text may quote a library's exception: masked as a log line is (spans
        # leave the process too: the trace file, a collector).
        status = (
            Status(StatusCode.ERROR, redact(error)) if error is not None else Status(StatusCode.OK)
        )
        span = ReadableSpan(
            name=name,
            context=context,
            parent=parent_context,
            resource=self.resource,
            attributes=attributes,
            links=links,
            status=status,
            start_time=start_ns,
            end_time=max(end_ns, start_ns),
            instrumentation_scope=_SCOPE,
        )
        self.spans += 1
        self.processor.on_end(span)

    def shutdown(self) -> None:
        """Export what is buffered and stop the processor (at the daemon's stop); stamps go on
        without spans."""
        self.fold()
        processor, self.processor = self.processor, None
        if processor is not None:
            processor.shutdown()


def now_ns() -> int:
    """The stamps' clock: the process's wall clock (OpenTelemetry's time base), whatever clock
    drives the daemon's logic (a replay's runs on the tape's time)."""
    return time.time_ns()
