"""The broker actor: sends approved orders, exactly once, and reconciles with the venue.

Orders of one batch are submitted side by side (the adapter bounds its own concurrency). Nothing
a broker raises crashes anything. A refusal is logged, counted and published as a ``rejected``
:class:`~tickd.codecs.schema.OrderUpdate`, so the portfolio stops counting the order as working
and the strategy sees what happened. Any other failure leaves the order's fate unknown, which is
never taken as a rejection: the order stays working and a reconciliation asks the venue.

Reconciliation runs at start, once the ``trade_updates`` stream is first ready, whenever it
reports a gap (it reconnected) and after an unknown outcome: the venue's recent fills, open
orders and positions are compared with the portfolio, every difference is logged, and the
portfolio takes the venue's state (crypto under the daemon's names: Alpaca lists positions as
BTCUSD). Risk denies new intents while it runs; if the venue cannot be asked (after retries)
trading is halted, because the daemon no longer knows what it holds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import anyio
import msgspec
import structlog

from tickd.codecs.schema import Order, OrderUpdate

from ..actors import Actor, Mailbox
from ..clock import Clock
from ..feeds.base import FeedGap
from ..portfolio import Portfolio, execution_key
from ..risk import RiskEngine, RiskState
from ..tracing import Tracing
from .base import (
    Broker,
    BrokerError,
    Fill,
    OrderRejectedError,
    OrderRequest,
    OrderWithdrawnError,
)
from .sim import SimBroker

__all__ = ["TRADE_UPDATES", "BrokerActor"]

TRADE_UPDATES = "alpaca.trade_updates"  # the source name of the order-update feed's gaps

_log = structlog.get_logger("tickd.broker")
_T = TypeVar("_T", Order, Fill)
# An order status that means no more events will come -> the trade_updates event it ended with.
_FINISHED = {"filled": "fill", "canceled": "canceled", "expired": "expired", "rejected": "rejected"}


class BrokerActor(Actor[Any]):
    def __init__(
        self,
        mailbox: Mailbox[Any],
        broker: Broker,
        risk: RiskEngine,
        publish: Callable[[list[Any]], Awaitable[None]],
        clock: Clock,
        updates_source: str = TRADE_UPDATES,
        reconcile_attempts: int = 3,
        pending_limit: float = 30.0,
        tracing: Tracing | None = None,
    ) -> None:
        super().__init__("broker", mailbox)
        self.tracing = tracing
        self.broker = broker
        self.risk = risk
        self.portfolio: Portfolio = risk.portfolio
        self.clock = clock
        self.updates_source = updates_source
        self.reconcile_attempts = reconcile_attempts
        self.pending_limit = pending_limit
        self._reconciling = anyio.Lock()
        self._unknown = False  # a submit of the batch ended with the order's fate unknown
        self.sent = 0
        self.failed: Counter[str] = Counter()  # by class: rejected, unavailable, error
        self.reconciliations = 0
        self.undelivered = 0  # order updates made here the closed bus refused (a stop)
        self.differences: list[str] = []  # the latest reconciliation's findings
        self.inconsistent_snapshots = 0  # executions kept coming: the clock cut decided
        self._publish = publish
        self._sim = broker if isinstance(broker, SimBroker) else None
        # Fills from here on are compared at the next reconciliation: at start, the last day's.
        self._since_ns = clock.now_ns() - 86_400 * 10**9
        self._names = {s.replace("/", ""): s for s in risk.crypto if "/" in s}

    async def on_start(self) -> None:
        await self.reconcile("start")

    async def handle(self, batch: list[Any]) -> None:
        requests: list[OrderRequest] = []
        market: list[Any] = []
        for item in batch:
            kind = type(item)
            if kind is OrderRequest:
                if market:  # the market before the order, in order
                    await self._market(market)
                    market = []
                requests.append(item)
            elif kind is FeedGap:
                if item.source == self.updates_source:
                    await self._submit_all(requests)
                    requests = []
                    await self.reconcile("trade_updates reconnected")
            else:
                if requests:
                    await self._submit_all(requests)
                    requests = []
                market.append(item)
        await self._submit_all(requests)
        if market:
            await self._market(market)

    async def _market(self, events: list[Any]) -> None:
        if self._sim is not None:
            await self._sim.on_market(events)

    async def _submit_all(self, requests: list[OrderRequest]) -> None:
        if len(requests) == 1:
            await self._submit(requests[0])
        elif requests:
            async with anyio.create_task_group() as tg:
                for request in requests:
                    tg.start_soon(self._submit, request)
        if self._unknown:  # once the batch's submits are all answered, not in between
            self._unknown = False
            await self.reconcile("an order's fate is unknown")

    async def _submit(self, request: OrderRequest) -> None:
        tracing, coid = self.tracing, request.client_order_id
        if tracing is None:
            await self._send(request, None)
            return
        # The adapter's lines too (retries, a lookup after a timeout) name the order's trace.
        with structlog.contextvars.bound_contextvars(**tracing.order_context(coid)):
            await self._send(request, tracing)

    async def _send(self, request: OrderRequest, tracing: Tracing | None) -> None:
        intent, coid = request.intent, request.client_order_id
        log = _log.bind(
            client_order_id=coid,
            strategy=intent.strategy,
            symbol=intent.symbol,
            side=intent.side,
            qty=str(intent.qty),
        )
        if tracing is not None:
            tracing.submitting(coid, time.time_ns())
        try:
            # Risk looks again as the order leaves (after the mailbox and the rate limit):
            # trading may have been halted, or a stop begun, while it waited.
            order = await self.broker.submit(request, go=partial(self.risk.recheck, intent))
        except OrderWithdrawnError as exc:
            if tracing is not None:
                tracing.submitted(coid, time.time_ns(), error=f"withdrawn: {exc}")
            self.failed["withdrawn"] += 1
            log.warning("order_withdrawn", reason=str(exc))
            self.portfolio.acknowledge(coid)
            await self._refused(request)
        except OrderRejectedError as exc:
            if tracing is not None:
                tracing.submitted(coid, time.time_ns(), error=f"rejected: {exc}")
            self.failed["rejected"] += 1
            log.warning("order_rejected", error=str(exc))
            self.portfolio.acknowledge(request.client_order_id)
            await self._refused(request)
        except Exception as exc:
            # Unreachable venue, unreadable answer, adapter bug: the order may or may not be
            # there. Never a rejection: it stays working until the venue says. The adapter has
            # looked it up already, so the reconciliation after the batch decides: no longer
            # pending, it is kept if the venue lists it and dropped if not (a failed
            # reconciliation halts trading).
            if tracing is not None:
                error = f"fate unknown: {type(exc).__name__}: {exc}"
                tracing.submitted(coid, time.time_ns(), error=error, final=False)
            self.failed["unavailable" if isinstance(exc, BrokerError) else "error"] += 1
            log.error("order_fate_unknown", error=f"{type(exc).__name__}: {exc}")
            self.portfolio.acknowledge(request.client_order_id)
            self._unknown = True
        else:
            # Still pending until its first order event (or a reconciliation lists it): a
            # reconciliation already under way may have asked before the venue had it.
            if tracing is not None:
                tracing.submitted(coid, time.time_ns(), order.id, order.status)
            self.sent += 1
            log.info("order_sent", order_id=order.id, status=order.status)
            event = _FINISHED.get(order.status)
            if event is not None:
                # The venue already had it, and it is done (a decision replayed after a
                # restart): no stream event will come, so say so. No quantity: its fill is in
                # the positions reconciliation took.
                now = self.clock.now_ns()
                await self._announce(
                    [OrderUpdate(event=event, order=order, ts_event=now, ts_recv=now)]
                )

    async def _refused(self, request: OrderRequest) -> None:
        intent, now = request.intent, self.clock.now_ns()
        order = Order(
            id="",
            client_order_id=request.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            order_type=intent.type,
            time_in_force=intent.time_in_force,
            status="rejected",
            qty=intent.qty,
            limit_price=intent.limit_price,
            failed_at=now,
        )
        # Through the bus to the risk actor, whose portfolio then stops counting it as working.
        await self._announce(
            [OrderUpdate(event="rejected", order=order, ts_event=now, ts_recv=now)]
        )

    async def _announce(self, updates: list[OrderUpdate]) -> None:
        """Publish order updates the broker made itself. During a stop the bus may be closed
        already (a submit answered after the risk actor ended): the update is logged and
        counted, not a crash; the next start's reconciliation takes the venue's state. A closed
        bus at any other time is a fault of the daemon's own, and raises."""
        try:
            await self._publish(updates)
        except anyio.ClosedResourceError:
            # A stop: the app marks risk as stopping before its cancel sweep (on_stop =
            # "cancel"), and closes this actor's mailbox once the risk actor's has drained.
            if not (self.risk.stopping or self.mailbox.closed):
                raise
            self.undelivered += len(updates)
            for update in updates:
                _log.warning(
                    "order_update_undelivered",
                    client_order_id=update.order.client_order_id,
                    update=update.event,
                    reason="the bus is closed (stopping)",
                )

    async def reconcile(self, why: str) -> None:
        """Bring the portfolio in line with the venue; halt trading if the venue can't say.

        One at a time. Order events are held back meanwhile (:meth:`Portfolio.freeze`) and
        applied after, each execution once: the venue's snapshot is consistent (see
        :meth:`_snapshot`), so an execution it lists is in its positions and marked as applied,
        and one it does not list comes after them. A pending order the venue still does not
        list after ``pending_limit`` seconds is dropped and reported.
        """
        async with self._reconciling:
            self.risk.reconciling = True
            self.portfolio.freeze()
            try:
                await self._reconcile(why)
            finally:
                held, moved = self.portfolio.thaw()
                self.risk.reconciling = False
                if held:
                    _log.info("reconcile_events_applied", events=held)
                if moved:
                    self.risk.watch_loss()

    async def _reconcile(self, why: str) -> None:
        for attempt in range(1, self.reconcile_attempts + 1):
            try:
                fills, orders, positions = await self._snapshot()
                break
            except Exception as exc:
                _log.warning("reconcile_failed", why=why, attempt=attempt, error=str(exc))
                if attempt == self.reconcile_attempts:
                    self.risk.set_state(
                        RiskState.HALTED, f"reconciliation failed: {exc}", "reconcile"
                    )
                    return
                await self.clock.sleep(0.5 * 2**attempt)
        self.differences = self._compare(orders, positions, fills)
        portfolio = self.portfolio
        for fill in fills:
            portfolio.remember_execution(
                execution_key(fill.order_id, fill.cum_qty, fill.execution_id)
            )
            portfolio.acknowledge(fill.client_order_id)  # the venue has seen it
        stale = self.clock.now_ns() - int(self.pending_limit * 1e9)
        for coid in portfolio.replace(positions, orders, stale_before_ns=stale):
            self.differences.append(f"order {coid}: approved, never seen at the venue")
        self.reconciliations += 1
        self._since_ns = max((f.ts_event for f in fills), default=self._since_ns)
        for line in self.differences:
            _log.warning("reconcile_difference", why=why, difference=line)
        _log.info(
            "reconciled",
            why=why,
            open_orders=len(orders),
            positions=len(positions),
            fills=len(fills),
            differences=len(self.differences),
            working=sorted(portfolio.orders),  # what the daemon counts as working from now on
        )

    async def _snapshot(self, tries: int = 5) -> tuple[list[Fill], list[Order], dict[str, Decimal]]:
        """The venue's fills, open orders and positions, consistent with each other: the fills
        are listed before and after the orders and positions, and the snapshot is taken again
        until no execution came in between (then the positions hold exactly the fills listed,
        and any later one is still to come on the stream). A venue too busy for that, ``tries``
        times over, is cut by its own clock: an execution no later than the positions request
        is taken as in them."""
        fills = [self._local(f) for f in await self.broker.fills(self._since_ns)]
        for _ in range(tries):
            orders = [self._local(o) for o in await self.broker.open_orders()]
            asked_ns = await self.broker.now_ns()  # the venue's time, as its fills carry
            venue = await self.broker.positions()
            positions = {self._names.get(s, s): q for s, q in venue.items()}
            after = [self._local(f) for f in await self.broker.fills(self._since_ns)]
            known = {f.execution_id for f in fills}
            if all(f.execution_id in known for f in after):
                return fills, orders, positions
            fills = after
        self.inconsistent_snapshots += 1
        _log.warning("reconcile_snapshot_cut_by_clock", tries=tries)
        return [f for f in fills if f.ts_event <= asked_ns], orders, positions

    def _local(self, item: _T) -> _T:
        """The venue's item under the daemon's symbol (Alpaca names crypto positions BTCUSD)."""
        symbol = self._names.get(item.symbol)
        return item if symbol is None else msgspec.structs.replace(item, symbol=symbol)

    def _compare(
        self, orders: list[Order], positions: dict[str, Decimal], fills: list[Any]
    ) -> list[str]:
        portfolio = self.portfolio
        found = [
            f"position {symbol}: venue {venue}, local {local}"
            for symbol in sorted(set(positions) | set(portfolio.positions))
            if (venue := positions.get(symbol, Decimal(0))) != (local := portfolio.position(symbol))
        ]
        venue_ids = {o.client_order_id for o in orders}
        found += [
            f"order {coid}: working locally, not open at the venue"
            for coid in sorted(set(portfolio.orders) - venue_ids - set(portfolio.pending))
        ]
        found += [
            f"order {o.client_order_id}: open at the venue, unknown locally"
            for o in orders
            if o.client_order_id not in portfolio.orders
        ]
        found += [
            f"fill {f.execution_id} ({f.side} {f.qty} {f.symbol} at {f.price}): missed by the "
            "stream"
            for f in fills
            if not portfolio.seen(execution_key(f.order_id, f.cum_qty, f.execution_id))
        ]
        return found
