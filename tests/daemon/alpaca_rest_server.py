"""A scripted Alpaca trading REST server on loopback for the broker tests: a real socket and HTTP
parser (``ThreadingHTTPServer`` in a thread, port 0), Alpaca's order, position and FILL activity
objects (alpaca-py's models parse them), and Alpaca's error bodies.

It keeps orders by ``client_order_id`` (a reused id answers 422 "client_order_id must be
unique"), positions and fills. Faults are scripted per route: ``server.faults["submit"]`` is a
list of :class:`Fault`, one taken per request, in order; a request with none left is answered
normally. Routes: ``submit`` (POST /v2/orders), ``orders`` (GET /v2/orders), ``lookup``
(GET /v2/orders:by_client_order_id), ``order`` (GET /v2/orders/{id}), ``cancel``
(DELETE /v2/orders/{id}), ``positions`` (GET /v2/positions), ``activities``
(GET /v2/account/activities).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tickd.codecs.timestamps import format_rfc3339_ns, parse_rfc3339_ns

OPEN_STATUSES = frozenset(
    {"new", "accepted", "pending_new", "partially_filled", "accepted_for_bidding", "held"}
)
DUPLICATE = {"code": 40010001, "message": "client_order_id must be unique"}


@dataclass
class Fault:
    """What the server does to one request instead of simply answering it."""

    status: int | None = None  # answer this status with Alpaca's error body
    code: int = 50010000
    message: str = "internal server error"
    retry_after: str | None = None
    body: bytes | None = None  # answer 200 with these bytes
    delay: float = 0.0  # seconds to wait before answering (or hanging up)
    process: bool = False  # the request takes effect all the same (the order is kept)
    hang_up: bool = False  # close the connection without an answer
    gate: threading.Event | None = None  # hold the request until this is set


def late(delay: float) -> Fault:
    """Accept the request, answer after ``delay`` (the client has given up by then)."""
    return Fault(delay=delay, process=True)


def lost(delay: float) -> Fault:
    """The request never arrives: no effect, and after ``delay`` the connection closes."""
    return Fault(delay=delay, hang_up=True)


def error(status: int, code: int, message: str, **kwargs: Any) -> Fault:
    return Fault(status=status, code=code, message=message, **kwargs)


def garbage(body: bytes = b'{"id": "6f1c', *, process: bool = True) -> Fault:
    return Fault(body=body, process=process)


@dataclass
class Received:
    method: str
    route: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class AlpacaRestServer:
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by client_order_id
    positions: dict[str, Decimal] = field(default_factory=dict)  # signed
    activities: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def requests(self, route: str) -> list[Received]:
        return [r for r in self.received if r.route == route]

    @contextmanager
    def running(self) -> Iterator[AlpacaRestServer]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            self._closing.set()  # cut scripted delays short
            server.shutdown()
            server.server_close()
            thread.join()

    # --- state ----------------------------------------------------------------------------

    def add_order(self, body: dict[str, Any]) -> tuple[int, Any]:
        cid = body.get("client_order_id") or str(uuid.uuid4())
        with self._lock:
            if cid in self.orders:
                return 422, DUPLICATE
            self.orders[cid] = order = _order(cid, body, format_rfc3339_ns(time.time_ns()))
            return 200, order

    def fill(self, client_order_id: str, price: str, qty: str | None = None) -> dict[str, Any]:
        """Execute (part of) an order: the order, the position and a FILL activity change."""
        with self._lock:
            order = self.orders[client_order_id]
            size = Decimal(qty or order["qty"])
            filled = Decimal(order["filled_qty"]) + size
            now_ns = time.time_ns()
            now = format_rfc3339_ns(now_ns)
            done = filled == Decimal(order["qty"])
            order.update(
                filled_qty=str(filled),
                filled_avg_price=price,
                status="filled" if done else "partially_filled",
                filled_at=now if done else None,
                updated_at=now,
            )
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now_ns // 10**9))
            sign = 1 if order["side"] == "buy" else -1
            symbol = order["symbol"]
            self.positions[symbol] = self.positions.get(symbol, Decimal(0)) + sign * size
            activity = {
                "id": f"{stamp}{now_ns // 10**6 % 1000:03d}::{uuid.uuid4()}",
                "activity_type": "FILL",
                "transaction_time": now,
                "type": "fill" if done else "partial_fill",
                "price": price,
                "qty": str(size),
                "side": order["side"],
                "symbol": symbol,
                "leaves_qty": str(Decimal(order["qty"]) - filled),
                "order_id": order["id"],
                "cum_qty": str(filled),
                "order_status": order["status"],
            }
            self.activities.append(activity)
            return activity

    def position_objects(self) -> list[dict[str, Any]]:
        """The positions as Alpaca's objects (what GET /v2/positions answers)."""
        return [_position(symbol, qty) for symbol, qty in self.positions.items() if qty]

    def _by_id(self, order_id: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o["id"] == order_id), None)

    # --- routes ---------------------------------------------------------------------------

    def route(self, method: str, path: str) -> str:
        if path == "/v2/orders":
            return "submit" if method == "POST" else "orders"
        if path == "/v2/orders:by_client_order_id":
            return "lookup"
        if path.startswith("/v2/orders/"):
            return "cancel" if method == "DELETE" else "order"
        routes = {
            "/v2/positions": "positions",
            "/v2/account/activities": "activities",
            "/v2/clock": "clock",
        }
        return routes.get(path, "unknown")

    def answer(self, request: Received) -> tuple[int, Any]:
        """The normal answer: (status, JSON-able body or None for no body)."""
        route, query = request.route, request.query
        if route == "submit":
            return self.add_order(request.body)
        if route == "orders":
            wanted = query.get("status", "open")
            found = [
                o
                for o in reversed(self.orders.values())  # newest first, as Alpaca lists them
                if wanted == "all" or (o["status"] in OPEN_STATUSES) == (wanted == "open")
            ]
            return 200, found[: int(query.get("limit", 50))]
        if route == "lookup":
            order = self.orders.get(query.get("client_order_id", ""))
            return (200, order) if order else (404, {"code": 40410000, "message": "not found"})
        if route in ("order", "cancel"):
            order = self._by_id(request.path.rsplit("/", 1)[1])
            if order is None:
                return 404, {"code": 40410000, "message": "order not found"}
            if route == "order":
                return 200, order
            if order["status"] not in OPEN_STATUSES:
                return 422, {"code": 42210000, "message": f"order is already {order['status']}"}
            now = format_rfc3339_ns(time.time_ns())
            order.update(status="canceled", canceled_at=now, updated_at=now)
            return 204, None
        if route == "positions":
            return 200, self.position_objects()
        if route == "activities":
            return 200, self._activities(query)
        if route == "clock":
            now = format_rfc3339_ns(time.time_ns())
            return 200, {"timestamp": now, "is_open": True, "next_open": now, "next_close": now}
        return 404, {"code": 40410000, "message": "endpoint not found"}

    def _activities(self, query: dict[str, str]) -> list[dict[str, Any]]:
        items = [a for a in self.activities if a["activity_type"] in query["activity_types"]]
        if "after" in query:
            after = parse_rfc3339_ns(query["after"])  # exclusive, as Alpaca's
            items = [a for a in items if parse_rfc3339_ns(a["transaction_time"]) > after]
        if "page_token" in query:
            ids = [a["id"] for a in items]
            items = items[ids.index(query["page_token"]) + 1 :]
        return items[: int(query.get("page_size", 100))]


def _decimal_text(value: Any) -> str | None:
    if value is None:
        return None
    return format(Decimal(str(value)).normalize(), "f")


def _order(cid: str, body: dict[str, Any], now: str) -> dict[str, Any]:
    """An order object as Alpaca's REST API returns it."""
    symbol = body["symbol"]
    return {
        "id": str(uuid.uuid4()),
        "client_order_id": cid,
        "created_at": now,
        "updated_at": now,
        "submitted_at": now,
        "filled_at": None,
        "expired_at": None,
        "canceled_at": None,
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)),
        "symbol": symbol,
        "asset_class": "us_equity",
        "notional": None,
        "qty": _decimal_text(body.get("qty")),
        "filled_qty": "0",
        "filled_avg_price": None,
        "order_class": "",
        "order_type": body["type"],
        "type": body["type"],
        "side": body["side"],
        "time_in_force": body["time_in_force"],
        "limit_price": _decimal_text(body.get("limit_price")),
        "stop_price": None,
        "status": "accepted",
        "extended_hours": bool(body.get("extended_hours", False)),
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "expires_at": None,
    }


def _position(symbol: str, qty: Decimal) -> dict[str, Any]:
    """A position object as Alpaca returns it: ``qty`` is signed, ``side`` says it again."""
    price = Decimal("100")
    return {
        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)),
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "avg_entry_price": str(price),
        "qty": str(qty),
        "qty_available": str(qty),
        "side": "long" if qty > 0 else "short",
        "market_value": str(qty * price),
        "cost_basis": str(qty * price),
        "unrealized_pl": "0",
        "unrealized_plpc": "0",
        "unrealized_intraday_pl": "0",
        "unrealized_intraday_plpc": "0",
        "current_price": str(price),
        "lastday_price": str(price),
        "change_today": "0",
    }


def _handler(owner: AlpacaRestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            parts = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Received(
                method=method,
                route=owner.route(method, parts.path),
                path=parts.path,
                query=dict(urllib.parse.parse_qsl(parts.query)),
                body=json.loads(raw) if raw else None,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            with owner._lock:
                owner.received.append(request)
                queue = owner.faults.get(request.route)
                fault = queue.pop(0) if queue else Fault(process=True)
            if fault.gate is not None:
                fault.gate.wait(5.0)
            status, body = owner.answer(request) if fault.process else (200, None)
            if fault.delay:
                owner._closing.wait(fault.delay)
            if fault.hang_up:
                self.close_connection = True
                return
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            if fault.status is not None:
                status, body = fault.status, {"code": fault.code, "message": fault.message}
            payload = fault.body if fault.body is not None else _json(body)
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
                self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _json(body: Any) -> bytes:
    return b"" if body is None else json.dumps(body).encode()
