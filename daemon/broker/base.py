"""What every broker adapter offers the broker actor, and the typed errors it raises.

An adapter turns an :class:`OrderRequest` (an approved intent with its deterministic
``client_order_id``) into an order at the venue, exactly once, and answers the questions
reconciliation asks: which orders are open, what is held, what was filled lately. Fills and
other order events reach the daemon as :class:`~tickd.codecs.schema.OrderUpdate` events on
the bus (from the ``trade_updates`` stream, or from the simulator).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Protocol, TypeAlias

from msgspec import Struct

from tickd.codecs.schema import Order
from tickd.strategies.base import OrderIntent

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerUnavailableError",
    "Fill",
    "Gate",
    "MalformedResponseError",
    "OrderRejectedError",
    "OrderRequest",
    "OrderWithdrawnError",
]


class OrderRequest(Struct, frozen=True, kw_only=True):
    """An intent risk approved, with the id the venue will know it by."""

    client_order_id: str
    intent: OrderIntent


class Fill(Struct, frozen=True, kw_only=True):
    """One execution, as reconciliation compares them (the venue's account activity)."""

    execution_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    ts_event: int
    cum_qty: Decimal | None = None  # the order's filled quantity after this execution


class BrokerError(Exception):
    """A broker call failed; ``client_order_id``, ``status`` (HTTP) and ``code`` (Alpaca's
    error code) say where, when known."""

    def __init__(
        self,
        message: str,
        *,
        client_order_id: str | None = None,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.client_order_id = client_order_id
        self.status = status
        self.code = code

    def __str__(self) -> str:
        where = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("client_order_id", self.client_order_id),
                ("status", self.status),
                ("code", self.code),
            )
            if value is not None
        )
        return f"{self.message} ({where})" if where else self.message


class OrderRejectedError(BrokerError):
    """The venue refused the order for good (insufficient buying power, invalid order, ...):
    retrying with the same request cannot succeed."""


class OrderWithdrawnError(BrokerError):
    """Never sent: when its turn to go out came (after the rate limit's wait), the daemon no
    longer wanted it (trading halted, reduce-only, a stop). Nothing reached the venue."""


class BrokerUnavailableError(BrokerError):
    """The venue could not be reached or kept failing (timeouts, 429, 5xx) past the retry
    budget and no order was found under the ``client_order_id`` (the last lookup may itself
    have failed): resubmitting the same id is safe, the venue refuses a second order."""


class MalformedResponseError(BrokerError):
    """The venue answered with a body that is not what its API documents (not JSON, or fields
    missing): the call's effect, if any, stands, but its answer is lost."""


# Asked before an order leaves: None to send it, else why not.
Gate: TypeAlias = Callable[[], str | None]


class Broker(Protocol):
    async def submit(self, request: OrderRequest, go: Gate | None = None) -> Order:
        """Place the order once: a retry, a timeout or a duplicate id resolves to the one order
        the venue has under ``request.client_order_id``. ``go`` is asked right before the first
        request leaves (after any rate-limit wait): a reason not to send raises
        :class:`OrderWithdrawnError`. Raises :class:`OrderRejectedError` or
        :class:`BrokerUnavailableError`."""
        ...

    async def cancel(self, order_id: str) -> None:
        """Ask the venue to cancel; :class:`OrderRejectedError` if it refuses (unknown order,
        already done)."""
        ...

    async def open_orders(self) -> list[Order]: ...

    async def positions(self) -> dict[str, Decimal]:
        """Signed quantity per symbol."""
        ...

    async def fills(self, since_ns: int) -> list[Fill]:
        """Executions at or after ``since_ns``, oldest first."""
        ...

    async def now_ns(self) -> int:
        """The venue's clock: what its fills' times are to be compared with (ours may be
        skewed from it)."""
        ...
