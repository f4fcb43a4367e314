"""The fake exchange's trading side: Alpaca's trading REST API and ``trade_updates`` stream.

REST runs on a small HTTP/1.1 server of its own (keep-alive, ``Content-Length`` bodies: what
``requests`` sends; websockets' server parses only GET and no framework is installed); the
``trade_updates`` websocket runs on a second port (:attr:`TradingServer.stream_url`, path
``/stream``). Both live on one event loop with the :class:`MatchingEngine`, which they call
directly: nothing locks.

Chaos (:class:`~tickd.daemon.fake_exchange.chaos.Chaos`, shared with the market side):

* order submissions, decided by the engine, which counts them: ``submit_fail_every`` answers
  500 and keeps nothing, ``submit_fail_kept_every`` answers 500 although it kept the order,
  ``submit_throttle_every`` answers 429 and keeps nothing; ``submit_timeout_every`` keeps the
  order and never answers, ``submit_lost_every`` keeps nothing and never answers (unanswered,
  the connection stays open until the client gives up);
* ``http_error_every``: every Nth API request (any route but ``/_chaos``) answers 500 unprocessed;
* a restart (:meth:`Chaos.restart`, which ``restart_for`` set above 0 starts): every connection
  on both ports is closed and, while :meth:`Chaos.refusing`, new REST connections are accepted
  and closed at once and websocket upgrades get HTTP 503;
* on the stream, per data message: ``delay``, ``drop_every``/``drop_probability`` (close after
  it), ``stall_after`` (stop sending, keep the socket), ``garbage_every`` and ``oversized_every``
  (an extra frame before it), and ``connect_error`` (an error frame, then a close, at the
  handshake).

``GET /_chaos`` shows the settings and the injected counts; ``POST /_chaos`` takes a partial
:class:`ChaosSettings` object (422 on a bad field). Neither asks for keys: loopback only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any, Final

import anyio
import anyio.abc
import msgspec
import structlog
from anyio.streams.buffered import BufferedByteReceiveStream
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickd.codecs.alpaca_trading import (
    ListenRequest,
    TradingAuthRequest,
    decode_client_message,
    encode_control,
    encode_trade_update,
)
from tickd.codecs.schema import Authorization, Listening, Order, OrderUpdate, StreamError
from tickd.codecs.timestamps import datetime_to_ns, format_rfc3339_ns, parse_rfc3339_ns

from .chaos import Chaos, ChaosSettings
from .matching import MatchingEngine, NewOrder, OrderError, SubmitUnansweredError

__all__ = ["TradingServer", "TradingStats", "order_json"]

_log = structlog.get_logger("tickd.fake_exchange")

_MAX_HEAD: Final = 64 * 1024
_MAX_BODY: Final = 1024 * 1024
_QUEUE: Final = 10_000  # order updates waiting for one slow stream client; more drops it
_AUTH_WINDOW: Final = 10.0  # seconds, as Alpaca's
_OVERSIZED: Final = 1024 * 1024 + 1  # one byte over websockets' (and alpaca-py's) max_size
_WATCH_INTERVAL: Final = 0.05
_CONNECTION_ERRORS: Final = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)
_TIME_FIELDS: Final = (
    "created_at",
    "updated_at",
    "submitted_at",
    "filled_at",
    "expired_at",
    "canceled_at",
    "failed_at",
    "replaced_at",
)


@dataclass
class TradingStats:
    requests: int = 0  # REST requests answered or held
    api_requests: int = 0  # of those, to the API (not ``/_chaos``): what http_error_every counts
    errors: dict[int, int] = field(default_factory=dict)  # by HTTP status
    held: int = 0  # submissions never answered (chaos)
    refused: int = 0  # connections refused during a restart
    stream_connections: int = 0
    listening: int = 0  # stream connections listening to trade_updates now
    bad_messages: int = 0  # client messages (REST bodies, stream frames) that did not decode
    slow_clients: int = 0  # stream connections dropped because their queue filled


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class _Reply:
    status: int
    body: Any = None  # JSON-able; None: no body
    hold: bool = False  # answer nothing (chaos)


class _BadRequestError(Exception):
    """A request the parser cannot read: answered with ``status``, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def order_json(order: Order) -> dict[str, Any]:
    """An order as Alpaca's REST API (and the stream's ``order``) shows it."""
    wire = msgspec.structs.asdict(order)
    for name in _TIME_FIELDS:
        ns = wire.get(name)
        wire[name] = None if ns is None else format_rfc3339_ns(ns)
    wire.pop("cancel_requested_at", None)
    wire["type"] = order.order_type
    wire["expires_at"] = None
    wire["legs"] = None
    return wire


def _error(status: int, code: int, message: str) -> _Reply:
    return _Reply(status, {"code": code, "message": message})


def _time(text: str, name: str) -> int:
    try:
        return parse_rfc3339_ns(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise OrderError(422, 40010001, f"invalid {name}: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return datetime_to_ns(moment)


def _number(text: str, name: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise OrderError(422, 40010001, f"invalid {name}: {text!r}")
    return number


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OrderError(422, 40010001, f"invalid {name}: {text!r}") from None


class TradingServer:
    """Alpaca's trading REST API on :attr:`url` and its ``trade_updates`` stream on
    :attr:`stream_url`, backed by ``engine``. Set once :meth:`run` has started."""

    def __init__(
        self,
        engine: MatchingEngine,
        *,
        key: str,
        secret: str,
        chaos: Chaos,
        host: str = "127.0.0.1",
        port: int = 0,
        stream_port: int = 0,
    ) -> None:
        self.engine = engine
        self.chaos = chaos
        self.host = host
        self.port = port
        self.stream_port = stream_port
        self.url = ""
        self.stream_url = ""
        self.stats = TradingStats()
        self._key = key
        self._secret = secret
        self._restarts = chaos.restarts  # the restarts already acted on
        self._scopes: set[anyio.CancelScope] = set()
        self._sockets: set[ServerConnection] = set()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._routes: dict[tuple[str, str], Callable[[_Request], _Reply]] = {
            ("GET", "/v2/account"): lambda r: _Reply(200, self.engine.account()),
            ("GET", "/v2/clock"): lambda r: _Reply(200, self.engine.clock()),
            ("GET", "/v2/assets"): self._assets,
            ("POST", "/v2/orders"): self._submit,
            ("GET", "/v2/orders"): self._orders,
            ("DELETE", "/v2/orders"): self._cancel_all,
            ("GET", "/v2/orders:by_client_order_id"): self._by_client_id,
            ("GET", "/v2/positions"): lambda r: _Reply(200, self.engine.positions()),
            ("DELETE", "/v2/positions"): self._close_all,
            ("GET", "/v2/account/activities"): self._activities,
        }

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started(url)`` once both ports listen."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with (
            listener,
            serve(
                self._stream,
                self.host,
                self.stream_port,
                process_request=self._upgrade,
                max_size=_MAX_BODY,
            ) as stream_server,
            anyio.create_task_group() as task_group,
        ):
            self._task_group = task_group
            stream_port = stream_server.sockets[0].getsockname()[1]
            self.url = f"http://{self.host}:{port}"
            self.stream_url = f"ws://{self.host}:{stream_port}/stream"
            task_group.start_soon(self._watch_restarts)
            _log.info("trading_listening", url=self.url, stream_url=self.stream_url)
            task_status.started(self.url)
            await listener.serve(self._connection, task_group=task_group)

    # --- restarts ----------------------------------------------------------------------------

    def _close_connections(self) -> None:
        """A restart began: close every connection (new ones are refused while it lasts)."""
        if self.chaos.restarts == self._restarts:
            return
        self._restarts = self.chaos.restarts
        _log.warning("trading_restart", seconds=self.chaos.settings.restart_for)
        for scope in list(self._scopes):
            scope.cancel()
        assert self._task_group is not None
        for socket in list(self._sockets):
            self._task_group.start_soon(socket.close, 1012, "service restart")

    async def _watch_restarts(self) -> None:
        while True:
            await anyio.sleep(_WATCH_INTERVAL)
            self._close_connections()

    # --- HTTP ----------------------------------------------------------------------------------

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            if self.chaos.refusing():
                self.stats.refused += 1
                return
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    await self._serve_http(stream)
                except _CONNECTION_ERRORS:
                    pass  # the client went away
                finally:
                    self._scopes.discard(scope)

    async def _serve_http(self, stream: anyio.abc.SocketStream) -> None:
        buffered = BufferedByteReceiveStream(stream)
        while True:
            try:
                head = await buffered.receive_until(b"\r\n\r\n", _MAX_HEAD)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return  # closed between requests
            try:
                request, keep_alive = _parse_head(head)
                length = _content_length(request.headers)
                request.body = await buffered.receive_exactly(length) if length else b""
            except anyio.DelimiterNotFound:
                await stream.send(_encode(_error(431, 43110000, "header too large"), False))
                return
            except _BadRequestError as exc:
                self.stats.bad_messages += 1
                reply = _error(exc.status, exc.status * 100_000, str(exc))
                await stream.send(_encode(reply, False))
                return
            reply = self._handle(request)
            if reply.hold:
                self.stats.held += 1
                while True:  # until the client gives up and closes
                    await buffered.receive()
            await stream.send(_encode(reply, keep_alive))
            self._close_connections()  # a POST /_chaos may have started a restart
            if not keep_alive:
                return

    def _handle(self, request: _Request) -> _Reply:
        self.stats.requests += 1
        if request.path == "/_chaos":
            reply = self._chaos(request)
        elif (
            request.headers.get("apca-api-key-id"),
            request.headers.get("apca-api-secret-key"),
        ) != (
            self._key,
            self._secret,
        ):
            reply = _error(401, 40110000, "request is not authorized")
        elif self._api_error():
            self.chaos.count("http_error")
            reply = _error(500, 50010000, "internal server error")
        else:
            try:
                reply = self._route(request)
            except OrderError as exc:
                reply = _error(exc.status, exc.code, exc.message)
            except SubmitUnansweredError:  # chaos, from any route that submits (a close, too)
                reply = _Reply(200, hold=True)
            except Exception:  # a bug here must cost this request, not the whole server
                _log.exception("trading_request_failed", method=request.method, path=request.path)
                reply = _error(500, 50010000, "internal server error")
        if reply.status >= 400:
            self.stats.errors[reply.status] = self.stats.errors.get(reply.status, 0) + 1
        return reply

    def _api_error(self) -> bool:
        self.stats.api_requests += 1
        return self.chaos.every(self.chaos.settings.http_error_every, self.stats.api_requests)

    def _route(self, request: _Request) -> _Reply:
        method, path = request.method, request.path
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler(request)
        engine = self.engine
        for prefix, actions in (
            ("/v2/orders/", {"GET": self._order, "DELETE": self._cancel}),
            ("/v2/positions/", {"GET": self._position, "DELETE": self._close}),
            ("/v2/assets/", {"GET": lambda r, s: _Reply(200, engine.asset(s))}),
            ("/v2/account/activities/", {"GET": self._activities_of}),
        ):
            if path.startswith(prefix) and len(path) > len(prefix):
                action = actions.get(method)
                if action is None:
                    return _error(405, 40510000, f"method {method} not allowed")
                return action(request, urllib.parse.unquote(path[len(prefix) :]))
        if any(path == route for _, route in self._routes):
            return _error(405, 40510000, f"method {method} not allowed")
        return _error(404, 40410000, "endpoint not found")

    # --- routes --------------------------------------------------------------------------------

    def _chaos(self, request: _Request) -> _Reply:
        if request.method == "GET":
            return _Reply(200, self._chaos_state())
        if request.method != "POST":
            return _error(405, 40510000, f"method {request.method} not allowed")
        try:
            changes = msgspec.json.decode(request.body, type=dict[str, Any])
            self.chaos.update(changes)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.stats.bad_messages += 1
            return _error(422, 40010001, f"invalid chaos settings: {exc}")
        _log.info("chaos_updated", changes=changes)
        return _Reply(200, self._chaos_state())

    def _chaos_state(self) -> dict[str, Any]:
        settings: ChaosSettings = self.chaos.settings
        return {"settings": settings, "injected": dict(self.chaos.injected)}

    def _submit(self, request: _Request) -> _Reply:
        try:
            new = msgspec.json.decode(request.body, type=NewOrder)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.stats.bad_messages += 1
            return _error(422, 40010001, f"invalid order: {exc}")
        return _Reply(200, order_json(self.engine.submit(new)))

    def _orders(self, request: _Request) -> _Reply:
        q = request.query
        orders = self.engine.list_orders(
            status=q.get("status", "open"),
            limit=_integer(q.get("limit", "50"), "limit"),
            after_ns=_time(q["after"], "after") if "after" in q else None,
            until_ns=_time(q["until"], "until") if "until" in q else None,
            direction=q.get("direction", "desc"),
            symbols=[s for s in q.get("symbols", "").split(",") if s],
            side=q.get("side"),
        )
        return _Reply(200, [order_json(o) for o in orders])

    def _by_client_id(self, request: _Request) -> _Reply:
        return _Reply(
            200, order_json(self.engine.get_by_client_id(request.query.get("client_order_id", "")))
        )

    def _order(self, request: _Request, order_id: str) -> _Reply:
        return _Reply(200, order_json(self.engine.get(order_id)))

    def _cancel(self, request: _Request, order_id: str) -> _Reply:
        self.engine.cancel(order_id)
        return _Reply(204)

    def _cancel_all(self, request: _Request) -> _Reply:
        canceled = self.engine.cancel_all()
        return _Reply(207, [{"id": o.id, "status": 200, "body": order_json(o)} for o in canceled])

    def _position(self, request: _Request, symbol: str) -> _Reply:
        return _Reply(200, self.engine.position(symbol))

    def _close(self, request: _Request, symbol: str) -> _Reply:
        q = request.query
        order = self.engine.close_position(
            symbol,
            qty=_number(q["qty"], "qty") if "qty" in q else None,
            percentage=_number(q["percentage"], "percentage") if "percentage" in q else None,
        )
        return _Reply(200, order_json(order))

    def _close_all(self, request: _Request) -> _Reply:
        if request.query.get("cancel_orders", "").lower() == "true":
            self.engine.cancel_all()
        closed = []
        for position in self.engine.positions():
            try:
                order = self.engine.close_position(position.symbol)
            except OrderError as exc:
                closed.append(
                    {
                        "symbol": position.symbol,
                        "status": exc.status,
                        "body": {"code": exc.code, "message": exc.message},
                    }
                )
            else:
                closed.append({"symbol": position.symbol, "status": 200, "body": order_json(order)})
        return _Reply(207, closed)

    def _activities(self, request: _Request) -> _Reply:
        types = request.query.get("activity_types", "FILL")
        return self._activity_page(request, [t for t in types.split(",") if t])

    def _activities_of(self, request: _Request, kind: str) -> _Reply:
        return self._activity_page(request, [kind])

    def _activity_page(self, request: _Request, types: list[str]) -> _Reply:
        q = request.query
        found = self.engine.activities(
            types=types,
            after_ns=_time(q["after"], "after") if "after" in q else None,
            until_ns=_time(q["until"], "until") if "until" in q else None,
            direction=q.get("direction", "desc"),
            page_size=_integer(q.get("page_size", "100"), "page_size"),
            page_token=q.get("page_token"),
        )
        return _Reply(200, found)

    def _assets(self, request: _Request) -> _Reply:
        wanted = request.query.get("asset_class")
        status = request.query.get("status", "active")
        assets = [
            a
            for a in self.engine.assets()
            if (wanted is None or a.asset_class == wanted) and a.status == status
        ]
        return _Reply(200, assets)

    # --- the trade_updates stream --------------------------------------------------------------

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.chaos.refusing():
            self.stats.refused += 1
            return connection.respond(503, "restarting\n")
        if request.path.split("?")[0] != "/stream":
            return connection.respond(404, "not found\n")
        return None

    async def _stream(self, websocket: ServerConnection) -> None:
        self.stats.stream_connections += 1
        self._sockets.add(websocket)
        try:
            with contextlib.suppress(ConnectionClosed):  # a close before or after the task group
                await _StreamConnection(self, websocket).run()
        finally:
            self._sockets.discard(websocket)


class _StreamConnection:
    """One ``trade_updates`` client: the handshake, then its updates, chaos applied."""

    def __init__(self, server: TradingServer, websocket: ServerConnection) -> None:
        self.server = server
        self.websocket = websocket
        content_type = (
            websocket.request.headers.get("Content-Type", "") if websocket.request else ""
        )
        self.msgpack = "msgpack" in content_type
        self.authorized = False
        self.sent = 0  # data messages
        self._send, self._receive = anyio.create_memory_object_stream[OrderUpdate](_QUEUE)
        self._unsubscribe: Callable[[], None] | None = None

    async def run(self) -> None:
        chaos = self.server.chaos
        if chaos.settings.connect_error:
            chaos.count("connect_error")
            await self._control(
                StreamError(code=chaos.settings.connect_error, msg="internal server error")
            )
            await self.websocket.close()
            return
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._forward)
                await self._read()
                task_group.cancel_scope.cancel()
        finally:
            self._listen(False)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._handshake_and_listen()

    async def _handshake_and_listen(self) -> None:
        with anyio.move_on_after(_AUTH_WINDOW) as window:
            first = await self.websocket.recv()
        if window.cancelled_caught:
            await self._refuse("authenticate", "auth timeout")
            return
        frame: str | bytes = first
        while True:
            message = self._decode(frame)
            if isinstance(message, TradingAuthRequest):
                if (message.key, message.secret) != (self.server._key, self.server._secret):
                    await self._refuse("authenticate", "access key verification failed")
                    return
                self.authorized = True
                await self._control(Authorization(status="authorized", action="authenticate"))
            elif isinstance(message, ListenRequest):
                if not self.authorized:
                    await self._control(Authorization(status="unauthorized", action="listen"))
                else:
                    streams = tuple(s for s in message.streams if s == "trade_updates")
                    self._listen(bool(streams))
                    await self._control(Listening(streams=streams))
            else:
                self.server.stats.bad_messages += 1
                await self._control(StreamError(code=400, msg="invalid syntax"))
            frame = await self.websocket.recv()

    def _decode(self, frame: str | bytes) -> Any:
        if self.msgpack and isinstance(frame, bytes):
            try:
                frame = msgspec.json.encode(msgspec.msgpack.decode(frame))
            except (msgspec.DecodeError, TypeError):
                return None
        return decode_client_message(frame)

    def _listen(self, on: bool) -> None:
        if on and self._unsubscribe is None:
            self._unsubscribe = self.server.engine.subscribe(self._offer)
            self.server.stats.listening += 1
        elif not on and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            self.server.stats.listening -= 1

    def _offer(self, update: OrderUpdate) -> None:
        try:
            self._send.send_nowait(update)
        except anyio.WouldBlock:  # a client this far behind is dropped, as Alpaca drops one
            self.server.stats.slow_clients += 1
            self._listen(False)
            self._send.close()
        except anyio.ClosedResourceError:
            self._listen(False)

    async def _forward(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send_updates()

    async def _send_updates(self) -> None:
        chaos = self.server.chaos
        async for update in self._receive:
            self.sent += 1
            settings = chaos.settings
            if settings.stall_after and self.sent > settings.stall_after:
                chaos.count("stall")
                await anyio.sleep_forever()
            if settings.delay:
                await anyio.sleep(settings.delay)
            if chaos.every(settings.garbage_every, self.sent):
                chaos.count("garbage")
                await self.websocket.send(b"\x00\xffgarbage")
            if chaos.every(settings.oversized_every, self.sent):
                chaos.count("oversized")
                await self.websocket.send(b" " * _OVERSIZED)
            await self._frame(encode_trade_update(update))
            if chaos.every(settings.drop_every, self.sent) or chaos.chance(
                settings.drop_probability
            ):
                chaos.count("drop")
                await self.websocket.close(1011, "chaos: dropped")
                return
        await self.websocket.close(1011, "slow client")

    async def _control(self, message: Authorization | Listening | StreamError) -> None:
        await self._frame(encode_control(message))

    async def _refuse(self, action: str, reason: str) -> None:
        await self._control(Authorization(status="unauthorized", action=action, message=reason))
        await self.websocket.close()

    async def _frame(self, data: bytes) -> None:
        """Binary frames, as paper sends them even in JSON mode; msgpack when asked for."""
        if self.msgpack:
            data = msgspec.msgpack.encode(msgspec.json.decode(data))
        await self.websocket.send(data)


# --- HTTP/1.1 parsing and encoding ----------------------------------------------------------------


def _parse_head(head: bytes) -> tuple[_Request, bool]:
    """The request line and headers (``head`` ends before the blank line); and keep-alive."""
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _BadRequestError(400, f"bad request line {lines[0][:80]!r}") from None
    if not version.startswith("HTTP/1."):
        raise _BadRequestError(505, f"unsupported version {version[:20]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequestError(400, f"bad header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    parts = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return _Request(method, parts.path, query, headers, b""), keep_alive


def _content_length(headers: dict[str, str]) -> int:
    if "transfer-encoding" in headers:
        raise _BadRequestError(411, "chunked bodies are not supported: send Content-Length")
    text = headers.get("content-length", "0")
    if not text.isdigit():
        raise _BadRequestError(400, f"bad Content-Length {text[:20]!r}")
    length = int(text)
    if length > _MAX_BODY:
        raise _BadRequestError(413, f"body over {_MAX_BODY} bytes")
    return length


def _encode(reply: _Reply, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
    body = b""
    if reply.status != 204:
        body = b"" if reply.body is None else msgspec.json.encode(reply.body)
        lines += ["Content-Type: application/json; charset=UTF-8", f"Content-Length: {len(body)}"]
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
