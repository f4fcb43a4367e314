"""The Alpaca broker: orders through alpaca-py's ``TradingClient``, each placed exactly once.

alpaca-py is synchronous (``requests``), so every call runs in a worker thread from a bounded
pool (an ``anyio.CapacityLimiter`` of ``settings.workers``), after a token from one
:class:`~tickd.daemon.broker.ratelimit.TokenBucket` that every call shares (Alpaca allows 200
requests a minute per account).

What a failed call means decides what happens next:

- no answer (timeout, connection error), a 5xx, or a 2xx body we cannot read: the order may be
  at the venue, so it is looked up by its ``client_order_id``; found, it is the answer; not
  found, the same request (same id) is sent again, after a backoff;
- 429: the request was not processed; it is sent again after ``Retry-After`` (or a backoff);
- 422 "client_order_id must be unique": an earlier attempt landed; the lookup returns it;
- any other 4xx: a refusal for good, :class:`~tickd.daemon.broker.base.OrderRejectedError`.

After ``settings.retries`` further attempts without an order:
:class:`~tickd.daemon.broker.base.BrokerUnavailableError`.

Answers are read raw (``raw_data=True``) and orders decoded by the trading-stream codec: the REST
order is the stream's order object, its times carry nanoseconds that alpaca-py's pydantic models
round to microseconds, and its status set grows faster than alpaca-py's enums.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, Final, Literal, TypeVar

import anyio
import msgspec
import requests
import structlog
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest
from msgspec import Struct

from tickd.codecs.alpaca_trading import TradingStreamDecoder
from tickd.codecs.schema import Order, OrderUpdate
from tickd.codecs.timestamps import NS_PER_SECOND, format_rfc3339_ns, parse_rfc3339_ns
from tickd.daemon.broker.base import (
    BrokerError,
    BrokerUnavailableError,
    Fill,
    Gate,
    MalformedResponseError,
    OrderRejectedError,
    OrderRequest,
    OrderWithdrawnError,
)
from tickd.daemon.broker.ratelimit import TokenBucket
from tickd.daemon.clock import Clock, LiveClock
from tickd.daemon.feeds.backoff import Backoff

__all__ = ["AlpacaBroker", "AlpacaBrokerSettings", "AlpacaBrokerStats"]

_log = structlog.get_logger("tickd.broker")
_T = TypeVar("_T")
_OPEN_ORDERS_LIMIT: Final = 500  # Alpaca's largest page of orders
_FILLS_PAGE: Final = 100  # Alpaca's largest page of account activities
_CLIENT_IDS_KEPT: Final = 10_000  # order id -> client order id lookups remembered
_LOOKUPS_AT_MOST: Final = 3  # more fills of unknown orders than this: list the orders instead
_LISTING_PAGES: Final = 10
_LISTING_MARGIN_NS: Final = 86_400 * 10**9  # orders submitted up to a day before their fill
_MESSAGE_CHARS: Final = 200


class AlpacaBrokerSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    paper: bool = True  # False trades real money (the config layer asks for ``live = true``)
    url_override: str | None = None  # another base URL (a test server)
    workers: int = 4  # alpaca-py calls running at once, each in a thread
    timeout: float = 10.0  # seconds: connecting, and each wait for the answer's bytes
    rate_per_minute: int = 200  # Alpaca's budget per account, shared by every call
    retries: int = 3  # further attempts after no answer, a 429 or a 5xx
    retry_backoff: float = 0.5  # seconds: the first retry's bound; it doubles per attempt
    max_retry_after: float = 60.0  # seconds: the longest ``Retry-After`` obeyed

    def __post_init__(self) -> None:
        if self.workers < 1 or self.rate_per_minute < 1 or self.retries < 0:
            raise ValueError("workers and rate_per_minute must be >= 1, retries >= 0")
        if not (self.timeout > 0 and self.retry_backoff > 0 and self.max_retry_after >= 0):
            raise ValueError("timeout and retry_backoff must be > 0, max_retry_after >= 0")


class AlpacaBrokerStats(Struct, kw_only=True):
    submitted: int = 0  # orders submit() returned (placed, or found already placed)
    duplicates_resolved: int = 0  # of those, found at the venue by their client order id
    timeouts: int = 0  # requests that got no answer in time
    retries: int = 0  # requests sent again
    rejected: int = 0  # OrderRejectedError raised
    unavailable: int = 0  # BrokerUnavailableError raised
    malformed: int = 0  # answers whose body could not be read
    rate_limited_waits: int = 0  # waits for a token of our bucket, or after a 429


_Kind = Literal["unknown", "throttled", "duplicate", "not_found", "refused"]


class _CallError(Exception):
    """One call that got no usable answer, classified (see the module docstring)."""

    def __init__(
        self,
        kind: _Kind,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: _Kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def public(self, cls: type[BrokerError], client_order_id: str | None = None) -> BrokerError:
        return cls(
            self.message, client_order_id=client_order_id, status=self.status, code=self.code
        )


class _ErrorBody(Struct):
    code: int | None = None
    message: str = ""


class _PositionWire(Struct):
    symbol: str
    qty: Decimal
    side: str = "long"


class _ClockWire(Struct):
    timestamp: str


class _FillWire(Struct):
    id: str
    order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    transaction_time: str
    cum_qty: Decimal | None = None


def _api_failure(exc: APIError) -> _CallError:
    """Classify an HTTP error answer and parse Alpaca's ``{"code": ..., "message": ...}``."""
    status: int = exc.status_code or 0
    text = str(exc)
    try:
        body = msgspec.json.decode(text, type=_ErrorBody)
    except msgspec.DecodeError:  # not Alpaca's JSON (a proxy's HTML page, say)
        body = _ErrorBody(message=text)
    message = f"HTTP {status}: {body.message[:_MESSAGE_CHARS]}"
    kind: _Kind = "refused"
    if status == 429:
        kind = "throttled"
    elif status >= 500:
        kind = "unknown"
    elif status == 404:
        kind = "not_found"
    elif status == 422 and "must be unique" in body.message:  # code 40010001 is generic
        kind = "duplicate"
    response = exc.response
    retry_after = _seconds(response.headers.get("Retry-After")) if response is not None else None
    return _CallError(kind, message, status=status, code=body.code, retry_after=retry_after)


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds; None when absent or not a number (the backoff applies)."""
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None


class _TradingClient(TradingClient):
    """alpaca-py's client, changed in its one per-request hook (``RESTClient._one_request``):

    - every request gets ``timeout``: ``requests`` waits forever by default. It bounds the
      connect and each wait for bytes (not the whole transfer), and raises ``requests.Timeout``;
    - its own retry loop is off (``retry=0``): on a 429 or 504 it sleeps 3 s inside the worker
      thread and sends again, blind; the broker retries instead, after a lookup. (Passing
      ``retry_attempts=0`` to the constructor does not work: alpaca-py treats 0 as "default".)
    """

    def __init__(self, api_key: str, secret_key: str, settings: AlpacaBrokerSettings) -> None:
        super().__init__(
            api_key,
            secret_key,
            paper=settings.paper,
            raw_data=True,
            url_override=settings.url_override,
        )
        self._timeout = settings.timeout

    def _one_request(self, method: str, url: str, opts: dict[str, Any], retry: int) -> Any:
        return super()._one_request(method, url, {**opts, "timeout": self._timeout}, 0)


def _order_request(request: OrderRequest) -> MarketOrderRequest | LimitOrderRequest:
    """The intent as alpaca-py's request model. alpaca-py types quantities and prices as
    floats; a Decimal with up to 15 significant digits survives the round trip exactly."""
    intent = request.intent
    fields: dict[str, Any] = {
        "symbol": intent.symbol,
        "qty": intent.qty,
        "side": OrderSide(intent.side),
        "time_in_force": TimeInForce(intent.time_in_force),
        "client_order_id": request.client_order_id,
    }
    if intent.type == "limit":
        return LimitOrderRequest(limit_price=intent.limit_price, **fields)
    return MarketOrderRequest(**fields)


class AlpacaBroker:
    """The :class:`~tickd.daemon.broker.base.Broker` for Alpaca (paper unless told otherwise).

    Credentials go to alpaca-py only; they are never logged or shown. ``stats`` counts what
    happened; log events carry the ``client_order_id``.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        settings: AlpacaBrokerSettings | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings or AlpacaBrokerSettings()
        self.stats = AlpacaBrokerStats()
        self._clock = clock or LiveClock()
        self._client = _TradingClient(api_key, secret_key, self.settings)
        # Order id -> client order id (never changes): a reconciliation lists the same fills
        # again, and each lookup costs one of the account's 200 requests a minute.
        self._client_ids: OrderedDict[str, str] = OrderedDict()
        self._limiter = anyio.CapacityLimiter(self.settings.workers)
        self._bucket = TokenBucket(self.settings.rate_per_minute, clock=self._clock)
        self._orders = TradingStreamDecoder("json")

    def __repr__(self) -> str:
        s = self.settings
        return f"AlpacaBroker(paper={s.paper}, url_override={s.url_override!r})"

    async def submit(self, request: OrderRequest, go: Gate | None = None) -> Order:
        cid = request.client_order_id
        log = _log.bind(client_order_id=cid)
        call = partial(self._client.submit_order, _order_request(request))
        backoff = self._backoff()
        failure: _CallError | MalformedResponseError | None = None
        for attempt in range(self.settings.retries + 1):
            if failure is not None:
                await self._pause(backoff, failure, log)
            try:
                # Only the first attempt may be withdrawn: after a failure the venue may have
                # the order, and the retry is how its one order is found.
                gate = go if attempt == 0 else None
                order = self._order(await self._call(call, cid, gate), cid)
            except _CallError as exc:
                failure = exc
                if exc.kind in ("refused", "not_found"):
                    self.stats.rejected += 1
                    log.warning(
                        "order_rejected", status=exc.status, code=exc.code, error=exc.message
                    )
                    raise exc.public(OrderRejectedError, cid) from None
                log.warning(
                    "order_submit_failed", kind=exc.kind, status=exc.status, attempt=attempt
                )
                if exc.kind == "throttled":
                    continue
            except MalformedResponseError as exc:
                failure = exc
                log.warning("order_submit_failed", kind="malformed", attempt=attempt)
            else:
                self.stats.submitted += 1
                log.info("order_submitted", order_id=order.id, attempt=attempt)
                return order
            found = await self._lookup(cid, log)
            if found is not None:
                self.stats.submitted += 1
                self.stats.duplicates_resolved += 1
                log.info("order_found", order_id=found.id, attempt=attempt)
                return found
        self.stats.unavailable += 1
        log.error("broker_unavailable", attempts=self.settings.retries + 1, error=str(failure))
        raise BrokerUnavailableError(
            f"no order after {self.settings.retries + 1} attempts; last: {failure}",
            client_order_id=cid,
            status=failure.status if failure is not None else None,
            code=failure.code if failure is not None else None,
        )

    async def cancel(self, order_id: str) -> None:
        """Ask for the cancel; it completes asynchronously (a ``canceled`` order update).
        A refusal (unknown order, already filled) raises :class:`OrderRejectedError`."""
        await self._read(partial(self._client.cancel_order_by_id, order_id), OrderRejectedError)
        _log.info("order_cancel_requested", order_id=order_id)

    async def open_orders(self) -> list[Order]:
        query = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=_OPEN_ORDERS_LIMIT)
        raw = await self._read(partial(self._client.get_orders, query))
        items = self._convert(raw, list[Any], "open orders")
        if len(items) == _OPEN_ORDERS_LIMIT:
            _log.warning("open_orders_truncated", limit=_OPEN_ORDERS_LIMIT)
        return [self._order(item) for item in items]

    async def positions(self) -> dict[str, Decimal]:
        raw = await self._read(self._client.get_all_positions)
        return {
            p.symbol: -abs(p.qty) if p.side == "short" else p.qty
            for p in self._convert(raw, list[_PositionWire], "positions")
        }

    async def _list_client_ids(self, since_ns: int) -> None:
        """Learn the client order ids of the orders submitted since ``since_ns`` from a listing
        (500 a page): a restart's reconciliation names a day of fills' orders in a few requests
        instead of one each (at 200 a minute, 160 fills held READY back for 50 s)."""
        after = since_ns
        for _ in range(_LISTING_PAGES):
            query = GetOrdersRequest(
                status=QueryOrderStatus.ALL,
                limit=_OPEN_ORDERS_LIMIT,
                after=datetime.fromtimestamp(after / 1e9, UTC),
                direction=Sort.ASC,
            )
            raw = await self._read(partial(self._client.get_orders, query))
            page = [self._order(item) for item in self._convert(raw, list[Any], "orders")]
            for order in page:
                self._client_ids[order.id] = order.client_order_id
            while len(self._client_ids) > _CLIENT_IDS_KEPT:
                self._client_ids.popitem(last=False)
            if len(page) < _OPEN_ORDERS_LIMIT or page[-1].submitted_at is None:
                return
            after = page[-1].submitted_at

    async def now_ns(self) -> int:
        """``GET /v2/clock``'s timestamp."""
        raw = await self._read(partial(self._client.get, "/clock"))
        return self._time(self._convert(raw, _ClockWire, "clock").timestamp)

    async def fills(self, since_ns: int) -> list[Fill]:
        """FILL account activities at or after ``since_ns``, oldest first. Activities carry the
        order id only: each order is looked up once for its ``client_order_id``. Sells short
        count as sells."""
        whole_second = (since_ns // NS_PER_SECOND - 1) * NS_PER_SECOND  # ``after`` is exclusive
        query: dict[str, Any] = {
            "activity_types": "FILL",
            "direction": "asc",
            "page_size": _FILLS_PAGE,
            "after": format_rfc3339_ns(whole_second),
        }
        activities: list[tuple[int, _FillWire]] = []
        while True:
            raw = await self._read(partial(self._client.get, "/account/activities", dict(query)))
            page = self._convert(raw, list[_FillWire], "fill activities")
            activities += [(self._time(item.transaction_time), item) for item in page]
            if len(page) < _FILLS_PAGE or page[-1].id == query.get("page_token"):
                break
            query["page_token"] = page[-1].id
        kept = sorted((pair for pair in activities if pair[0] >= since_ns), key=lambda p: p[0])
        client_ids = self._client_ids
        unknown = {item.order_id for _, item in kept if item.order_id not in client_ids}
        if len(unknown) > _LOOKUPS_AT_MOST:
            await self._list_client_ids(since_ns - _LISTING_MARGIN_NS)
        for _, item in kept:
            if item.order_id not in client_ids:
                raw = await self._read(partial(self._client.get_order_by_id, item.order_id))
                client_ids[item.order_id] = self._order(raw).client_order_id
                if len(client_ids) > _CLIENT_IDS_KEPT:
                    client_ids.popitem(last=False)
        return [
            Fill(
                execution_id=item.id,
                order_id=item.order_id,
                client_order_id=client_ids[item.order_id],
                symbol=item.symbol,
                side="sell" if item.side == "sell_short" else item.side,
                qty=item.qty,
                price=item.price,
                ts_event=ts,
                cum_qty=item.cum_qty,
            )
            for ts, item in kept
        ]

    # --- calls ----------------------------------------------------------------------------

    async def _call(
        self, call: Callable[[], object], cid: str | None = None, go: Gate | None = None
    ) -> object:
        """One alpaca-py call: ``go`` (if given: :class:`OrderWithdrawnError` when it says no)
        before and after taking a token, then a worker thread. Raises :class:`_CallError` or
        :class:`MalformedResponseError`, nothing else of the transport's. A cancelled caller waits
        for its thread (about ``timeout`` at most): a request is never abandoned mid-flight."""
        self._withdraw_if(go, cid)  # not worth a token (a halted backlog would spend them all)
        # Waiting for a token, the order is given up as soon as ``go`` says no (its slot back).
        waited = await self._bucket.acquire(None if go is None else lambda: go() is not None)
        if waited is None:  # given up, its token handed back: it must not go out now
            reason = (go() if go is not None else None) or "withdrawn while waiting for a token"
            raise OrderWithdrawnError(reason, client_order_id=cid)
        if waited:
            self.stats.rate_limited_waits += 1
        self._withdraw_if(go, cid)
        try:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        except APIError as exc:
            raise _api_failure(exc) from None
        except requests.exceptions.JSONDecodeError as exc:  # before RequestException: a subclass
            self.stats.malformed += 1
            raise MalformedResponseError(
                f"a body that is not JSON: {exc}", client_order_id=cid
            ) from None
        except requests.Timeout:
            self.stats.timeouts += 1
            raise _CallError("unknown", f"no answer within {self.settings.timeout} s") from None
        except requests.RequestException as exc:
            raise _CallError("unknown", f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # alpaca-py refused an argument (an order id not a UUID)
            raise _CallError("refused", f"invalid request: {exc}") from None

    @staticmethod
    def _withdraw_if(go: Gate | None, cid: str | None) -> None:
        withdrawn = go() if go is not None else None
        if withdrawn is not None:
            raise OrderWithdrawnError(withdrawn, client_order_id=cid)

    async def _read(
        self, call: Callable[[], object], refused: type[BrokerError] = BrokerError
    ) -> object:
        """A call with no side effect to double: retried after no answer, a 429 or a 5xx."""
        backoff = self._backoff()
        while True:
            try:
                return await self._call(call)
            except _CallError as exc:
                if exc.kind not in ("unknown", "throttled"):
                    raise exc.public(refused) from None
                if backoff.attempts == self.settings.retries:
                    self.stats.unavailable += 1
                    _log.error("broker_unavailable", status=exc.status, error=exc.message)
                    raise exc.public(BrokerUnavailableError) from None
                await self._pause(backoff, exc, _log)

    async def _lookup(self, cid: str, log: Any) -> Order | None:
        """The order the venue holds under ``cid``; None when it has none, or did not say."""
        try:
            raw = await self._call(partial(self._client.get_order_by_client_id, cid), cid)
        except _CallError as exc:
            if exc.kind != "not_found":
                log.warning("order_lookup_failed", kind=exc.kind, status=exc.status)
            return None
        return self._order(raw, cid)

    def _backoff(self) -> Backoff:
        first = self.settings.retry_backoff
        return Backoff(initial=first, cap=first * 2**self.settings.retries)

    async def _pause(self, backoff: Backoff, failure: Exception, log: Any) -> None:
        retry_after = failure.retry_after if isinstance(failure, _CallError) else None
        if isinstance(failure, _CallError) and failure.kind == "throttled":
            self.stats.rate_limited_waits += 1
        delay = backoff.next_delay(min(retry_after or 0.0, self.settings.max_retry_after))
        self.stats.retries += 1
        log.info("broker_retry", delay=round(delay, 3), after=str(failure))
        await self._clock.sleep(delay)

    # --- decoding -------------------------------------------------------------------------

    def _order(self, raw: object, cid: str | None = None) -> Order:
        """A REST order through the trading-stream codec (exact nanoseconds, lenient nulls)."""
        frame = msgspec.json.encode(
            {"stream": "trade_updates", "data": {"event": "", "order": raw}}
        )
        decoded = self._orders.decode(frame)
        if decoded.messages and isinstance(update := decoded.messages[0], OrderUpdate):
            return update.order
        self.stats.malformed += 1
        reason = decoded.errors[0].reason if decoded.errors else "not an order"
        raise MalformedResponseError(f"malformed order: {reason}", client_order_id=cid)

    def _convert(self, raw: object, kind: type[_T], what: str) -> _T:
        try:
            return msgspec.convert(raw, kind)
        except msgspec.ValidationError as exc:
            self.stats.malformed += 1
            raise MalformedResponseError(f"malformed {what}: {exc}") from None

    def _time(self, text: str) -> int:
        try:
            return parse_rfc3339_ns(text)
        except ValueError as exc:
            self.stats.malformed += 1
            raise MalformedResponseError(f"malformed time: {exc}") from None
