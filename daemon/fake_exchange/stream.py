"""Alpaca's market data websockets, and the bar history REST, on one loopback port.

Websocket paths as Alpaca's (``/v2/iex``, ``/v2/sip``, ``/v2/delayed_sip``, ``/v2/test``,
``/v1beta3/crypto/us``, ``/v1beta1/news``); any other path is refused with HTTP 404. Per
connection, in the encoding its upgrade request's ``Content-Type`` asks for (msgpack or JSON):
``connected``; auth (a message within ``auth_timeout``, or the ``APCA-API-*`` headers on the
upgrade); ``authenticated`` or Alpaca's error (402 bad keys, 404 auth timeout, 406 a second
connection for the key on this path, 409 ``/v2/sip`` without the plan); then subscribe and
unsubscribe, each acknowledged with the whole current set (400 bad syntax or symbol, 401 before
auth, 403 auth again, 405 past ``symbol_limit``, 410 a channel this path lacks), and the data of
the subscribed channels and symbols (``*``: every symbol). A client that cannot keep up
(``send_queue`` batches waiting) gets 407 and is dropped; a failure handling its request, 500.

The faults in :class:`~.chaos.ChaosSettings` apply per connection, counted in data messages sent
(drop, stall, delay) or frames (garbage, oversized, malformed: a well-formed frame with a bad
payload, of ``malformed_kinds`` in turn, before the data frame; broken: a frame that breaks the
websocket protocol, of ``broken_kinds`` in turn, and the end of that connection);
``connect_error`` answers the auth with that error and closes; a restart closes every
connection and refuses upgrades with HTTP 503. :meth:`StreamServer.abort_connections` is a crash
as the clients see it (a TCP reset, no close frame).

Plain HTTP GETs (no upgrade) get the historical bars: ``/v2/stocks/bars`` and
``/v1beta3/crypto/us/bars`` with Alpaca's parameters and paging, keys in the ``APCA-API-KEY-ID``
and ``APCA-API-SECRET-KEY`` headers (401 without, 403 wrong).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import urllib.parse
from http import HTTPStatus
from typing import Any, Final

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from tickd.codecs.alpaca import (
    STREAM_TYPES,
    AlpacaEncoder,
    AuthRequest,
    Encoding,
    Stream,
    SubscribeRequest,
    decode_client_message,
)
from tickd.codecs.alpaca_rest import encode_bars_page
from tickd.codecs.errors import DecodeError
from tickd.codecs.schema import (
    Bar,
    CancelError,
    ChannelSets,
    Correction,
    CryptoBar,
    CryptoDailyBar,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
    DailyBar,
    Imbalance,
    Luld,
    News,
    OrderbookUpdate,
    Quote,
    StreamError,
    Subscription,
    Success,
    Trade,
    TradingStatus,
    UpdatedBar,
)
from tickd.codecs.timestamps import TimestampError, parse_rfc3339_ns

from .chaos import Chaos, MalformedKind
from .market import Market, is_crypto, valid_symbol

__all__ = ["ERROR_MESSAGES", "StreamServer", "StreamSettings", "StreamStats"]

_log = structlog.get_logger("tickd.fake_exchange")

ERROR_MESSAGES: Final = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    408: "v2 not enabled",
    409: "insufficient subscription",
    410: "invalid subscribe action for this feed",
    411: "insufficient scope",
    412: "option messages are only available in MsgPack format",
    413: "star subscription is not allowed for option quotes",
    500: "internal error",
}
_STOCKS: Final = (
    "trades",
    "quotes",
    "bars",
    "updated_bars",
    "daily_bars",
    "statuses",
    "lulds",
    "corrections",
    "cancel_errors",
    "imbalances",
)
_CRYPTO: Final = ("trades", "quotes", "orderbooks", "bars", "updated_bars", "daily_bars")
# path -> (stream, the channels its subscription ack lists)
_ENDPOINTS: Final[dict[str, tuple[Stream, tuple[str, ...]]]] = {
    "/v2/iex": ("stocks", _STOCKS),
    "/v2/sip": ("stocks", _STOCKS),
    "/v2/delayed_sip": ("stocks", _STOCKS),
    "/v2/test": ("stocks", ("trades", "quotes", "bars")),
    "/v1beta3/crypto/us": ("crypto", _CRYPTO),
    "/v1beta1/news": ("news", ("news",)),
}
_IMPLIED: Final = ("corrections", "cancel_errors")  # follow the trades subscription
_CHANNEL_OF: Final[dict[type, str]] = {
    Trade: "trades",
    Quote: "quotes",
    Bar: "bars",
    UpdatedBar: "updated_bars",
    DailyBar: "daily_bars",
    TradingStatus: "statuses",
    Luld: "lulds",
    Correction: "trades",
    CancelError: "trades",
    Imbalance: "imbalances",
    CryptoTrade: "trades",
    CryptoQuote: "quotes",
    CryptoBar: "bars",
    CryptoUpdatedBar: "updated_bars",
    CryptoDailyBar: "daily_bars",
    OrderbookUpdate: "orderbooks",
    News: "news",
}
_BARS_ROUTES: Final = {"/v2/stocks/bars": "stocks", "/v1beta3/crypto/us/bars": "crypto"}
_MINUTE_TIMEFRAMES: Final = frozenset({"1Min", "1T", "1Minute"})
NS_PER_DAY: Final = 86_400 * 1_000_000_000


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: str
    secret: str
    host: str = "127.0.0.1"
    port: int = 0
    sip: bool = True  # False: /v2/sip answers 409 (the free plan)
    symbol_limit: int = 0  # symbols per connection (the free plan's 30); 0: no limit
    auth_timeout: float = 10.0
    frame_messages: int = 100  # data messages per frame at most
    send_queue: int = 512  # batches waiting for a slow client before it gets 407
    ping_interval: float | None = 20.0  # the server's keepalive (reaps half-open clients)
    ping_timeout: float | None = 20.0
    max_size: int = 2**20  # of a client's message


class StreamStats(msgspec.Struct, kw_only=True):
    connections: int = 0
    authenticated: int = 0
    errors: dict[int, int] = {}  # error code sent -> times
    slow_clients: int = 0
    rest_requests: int = 0


class _Client:
    """One websocket connection's state."""

    def __init__(self, websocket: ServerConnection, path: str, send_queue: int) -> None:
        self.websocket = websocket
        self.path = path
        self.stream, self.ack_channels = _ENDPOINTS[path]
        content_type = (
            websocket.request.headers.get("Content-Type", "") if websocket.request else ""
        )
        self.encoding: Encoding = "msgpack" if "msgpack" in content_type else "json"
        self.encoder = _encoder(self.stream, self.encoding)
        self.types = frozenset(STREAM_TYPES[self.stream])
        self.key = ""
        self.authenticated = False
        self.channels: dict[str, dict[str, None]] = {c: {} for c in self.ack_channels}
        self.sent = 0  # data messages
        self.frames = 0  # frames after the handshake (data, garbage, oversized, malformed)
        self.malformed = 0  # malformed frames sent (the next one is of the next kind)
        self.stalled = False
        self.overflow = anyio.Event()
        self.outbox: MemoryObjectSendStream[list[Any]]
        self.inbox: MemoryObjectReceiveStream[list[Any]]
        self.outbox, self.inbox = anyio.create_memory_object_stream[list[Any]](send_queue)

    @property
    def open(self) -> bool:
        return self.websocket.protocol.state is State.OPEN

    async def send(self, messages: list[Any]) -> None:
        await self.send_frame(self.encoder.encode(messages))

    async def send_frame(self, frame: bytes) -> None:
        await self.websocket.send(frame.decode() if self.encoding == "json" else frame)

    def wants(self, event: Any) -> bool:
        kind = type(event)
        if kind not in self.types and kind is not News:
            return False
        symbols = self.channels.get(_CHANNEL_OF[kind])
        if not symbols:
            return False
        if "*" in symbols:
            return True
        if kind is News:  # news names crypto pairs without the slash (BTCUSD)
            named = event.symbols
            return event.provider == "alpaca" and any(s.replace("/", "") in named for s in symbols)
        return event.symbol in symbols

    def ack(self) -> Subscription:
        fields = {c: tuple(self.channels[c]) for c in self.ack_channels}
        for implied in _IMPLIED:
            if implied in fields:
                fields[implied] = fields["trades"]
        return Subscription(**fields)


@functools.cache
def _encoder(stream: Stream, encoding: Encoding) -> AlpacaEncoder:
    return AlpacaEncoder(stream, encoding)


@functools.cache
def _fault_frame(kind: str, encoding: Encoding, size: int = 0) -> bytes:
    """A frame no decoder makes sense of (``garbage``), or a well-formed one of ``size`` bytes
    holding one message of an unknown type (``oversized``)."""
    if kind == "garbage":
        return b"garbage: not an Alpaca frame" if encoding == "json" else b"\xc1\xc1garbage"
    encode = msgspec.json.encode if encoding == "json" else msgspec.msgpack.encode
    return encode([{"T": "padding", "p": "x" * size}])


# Server frames are not masked: FIN and opcode, then the length (126: two bytes follow).
_BROKEN_FRAMES: Final = {
    "reserved_bit": bytes([0x80 | 0x20 | 0x2, 4]) + b"rsv2",  # RSV2: no extension defines it
    "opcode": bytes([0x80 | 0x3, 6]) + b"opcode",  # 0x3: reserved for a future data frame
    "truncated": bytes([0x80 | 0x2, 126]) + (1000).to_bytes(2, "big") + b"only ten b",
}
_BAD_UTF8: Final = (b"~~~~", b"\xff\xfe\xfd\xfc")  # a placeholder symbol, and what replaces it


def _malformed_frame(
    kind: MalformedKind, stream: Stream, encoding: Encoding, symbol: str, ts: int
) -> bytes:
    """One frame of ``kind`` (see :class:`~.chaos.ChaosSettings`), for a client of ``stream``
    in ``encoding``; its one message names ``symbol`` at ``ts``. A NaN price is what each wire
    can carry: a msgpack float64 NaN, and in JSON (which has no NaN) ``null``, what JSON
    encoders (JavaScript's, msgspec's) write for it."""
    module: Any = msgspec.json if encoding == "json" else msgspec.msgpack
    if kind == "bad_json":  # (for msgpack: a frame that does not parse either)
        return b'[{"T":"t","S":"AAPL","p":' if encoding == "json" else b"\x91\x87\xa1T\xa1t\xa1S"
    if kind == "unknown_type":
        return bytes(module.encode([{"T": "chaos_unknown", "S": symbol}]))
    crypto = stream == "crypto"
    trade = CryptoTrade if crypto else Trade
    name = _BAD_UTF8[0].decode() if kind == "invalid_utf8" else symbol
    good = _encoder("crypto" if crypto else "stocks", encoding).encode(
        [trade(symbol=name, ts_event=ts, price=1.0, size=1)]
    )
    fields = module.decode(good)[0]  # a plain dict: drop or change a field
    if kind == "missing_fields":
        del fields["p"]
    elif kind == "nan_price":
        fields["p"] = float("nan")
    frame = bytes(module.encode([fields]))
    return frame.replace(*_BAD_UTF8) if kind == "invalid_utf8" else frame


class _RequestError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(ERROR_MESSAGES[code])
        self.code = code


class StreamServer:
    """Serves the market data streams and the bar history (see the module)."""

    def __init__(self, market: Market, chaos: Chaos, settings: StreamSettings) -> None:
        self.market = market
        self.chaos = chaos
        self.settings = settings
        self.stats = StreamStats()
        self.url = ""
        self._clients: set[_Client] = set()
        self._slots: dict[tuple[str, str], _Client] = {}  # (key, path) -> its connection
        self._rest_count = 0
        self._broken = 0  # protocol-breaking frames sent (the next one is of the next kind)

    async def run(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(url)`` once listening."""
        settings = self.settings
        async with serve(
            self._handle,
            settings.host,
            settings.port,
            process_request=self._process_request,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            close_timeout=1.0,
            max_size=settings.max_size,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://{settings.host}:{port}"
            self.market.subscribe(self._on_market)
            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._watch_restarts)
                    task_status.started(self.url)
            finally:
                self.market.unsubscribe(self._on_market)

    # --- market -> clients ------------------------------------------------------------------

    def _on_market(self, events: list[Any]) -> None:
        for client in list(self._clients):
            if not client.authenticated:
                continue
            matched = [e for e in events if client.wants(e)]
            if not matched:
                continue
            try:
                client.outbox.send_nowait(matched)
            except anyio.WouldBlock:
                client.overflow.set()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async def _watch_restarts(self) -> None:
        seen = self.chaos.restarts
        while True:
            await anyio.sleep(0.02)
            if self.chaos.restarts != seen:
                seen = self.chaos.restarts
                for client in list(self._clients):
                    client.websocket.transport.close()  # no close frame: the server went away

    def abort_connections(self) -> int:
        """Abort every connection (a TCP reset, no close frame): what a crash looks like to the
        clients. Cancel :meth:`run` too and the port stops listening. Returns how many."""
        clients = list(self._clients)
        for client in clients:
            client.websocket.transport.abort()
        return len(clients)

    # --- a connection -----------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._rest(request)
        if self.chaos.refusing():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "restarting\n")
        if urllib.parse.urlsplit(request.path).path not in _ENDPOINTS:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        path = urllib.parse.urlsplit(websocket.request.path).path
        client = _Client(websocket, path, self.settings.send_queue)
        self.stats.connections += 1
        self._clients.add(client)
        try:
            await client.send([Success("connected")])
            if await self._authenticate(client):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._send_data, client, tasks.cancel_scope)
                    tasks.start_soon(self._watch_overflow, client, tasks.cancel_scope)
                    await self._serve_requests(client)
                    tasks.cancel_scope.cancel()
        except ConnectionClosed:
            pass
        except Exception:  # a bug here: Alpaca's 500, and this connection ends
            _log.exception("stream_client_failed", path=path)
            with anyio.move_on_after(1), contextlib.suppress(ConnectionClosed):
                await self._error(client, 500)
        finally:
            self._clients.discard(client)
            client.outbox.close()
            if self._slots.get((client.key, path)) is client:
                del self._slots[client.key, path]
            await websocket.close()

    async def _authenticate(self, client: _Client) -> bool:
        """Until authenticated (True) or refused (False: the error went out, close)."""
        headers = client.websocket.request.headers if client.websocket.request else Headers()
        if "APCA-API-KEY-ID" in headers:
            key, secret = headers["APCA-API-KEY-ID"], headers.get("APCA-API-SECRET-KEY", "")
        else:
            auth = None
            with anyio.move_on_after(self.settings.auth_timeout):
                while auth is None:
                    message = await self._receive(client)
                    if isinstance(message, AuthRequest):
                        auth = message
                    else:
                        await self._error(client, 400 if message is None else 401)
            if auth is None:
                await self._error(client, 404)
                return False
            key, secret = auth.key, auth.secret
        refusal = self._refusal(client, key, secret)
        if refusal:
            await self._error(client, refusal)
            return False
        client.key = key
        client.authenticated = True
        self._slots[key, client.path] = client
        self.stats.authenticated += 1
        await client.send([Success("authenticated")])
        return True

    def _refusal(self, client: _Client, key: str, secret: str) -> int:
        """The error code an auth gets, or 0."""
        if self.chaos.settings.connect_error:
            self.chaos.count("connect_error")
            return self.chaos.settings.connect_error
        if (key, secret) != (self.settings.key, self.settings.secret):
            return 402
        if client.path == "/v2/sip" and not self.settings.sip:
            return 409
        holder = self._slots.get((key, client.path))
        if holder is not None and holder.open:
            return 406
        return 0

    async def _serve_requests(self, client: _Client) -> None:
        """Answer the client's requests until it goes away."""
        while True:
            try:
                message = await self._receive(client)
            except ConnectionClosed:
                return
            if message is None:
                await self._error(client, 400)
            elif isinstance(message, AuthRequest):
                await self._error(client, 403)
            else:
                try:
                    self._apply(client, message, isinstance(message, SubscribeRequest))
                except _RequestError as exc:
                    await self._error(client, exc.code)
                    continue
                await client.send([client.ack()])

    async def _receive(self, client: _Client) -> Any:
        """The client's next message, or None when it is not one."""
        data = await client.websocket.recv()
        encoding: Encoding = "json" if isinstance(data, str) else client.encoding
        message = decode_client_message(data, encoding)
        return None if isinstance(message, DecodeError) else message

    def _apply(self, client: _Client, request: ChannelSets, add: bool) -> None:
        """Change the subscription as asked, or raise (and change nothing)."""
        asked = {
            name: symbols
            for name in ChannelSets.__struct_fields__
            if (symbols := getattr(request, name)) and name not in _IMPLIED  # trades' anyway
        }
        for name, symbols in asked.items():
            if name not in client.channels:
                raise _RequestError(410)
            if any(s != "*" and not valid_symbol(s) for s in symbols):
                raise _RequestError(400)
        changed = {name: dict(symbols) for name, symbols in client.channels.items()}
        for name, symbols in asked.items():
            for symbol in symbols:
                if add:
                    changed[name][symbol] = None
                else:
                    changed[name].pop(symbol, None)
        limit = self.settings.symbol_limit
        if limit and len({s for c in changed.values() for s in c if s != "*"}) > limit:
            raise _RequestError(405)
        client.channels = changed
        if add:
            for symbols in asked.values():
                for symbol in symbols:
                    if symbol != "*" and client.stream != "news":
                        self.market.ensure(symbol)

    async def _error(self, client: _Client, code: int) -> None:
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
        _log.warning("stream_error_sent", code=code, path=client.path, key=client.key)
        await client.send([StreamError(code=code, msg=ERROR_MESSAGES.get(code, "error"))])

    async def _watch_overflow(self, client: _Client, scope: anyio.CancelScope) -> None:
        """A client that fell ``send_queue`` batches behind: 407, then the connection ends
        (what was written before is still flushed to it)."""
        await client.overflow.wait()
        self.stats.slow_clients += 1
        with anyio.move_on_after(0.5), contextlib.suppress(ConnectionClosed):
            await self._error(client, 407)
        client.websocket.transport.close()
        scope.cancel()

    async def _send_data(self, client: _Client, scope: anyio.CancelScope) -> None:
        size = max(1, self.settings.frame_messages)
        async for batch in client.inbox:
            if client.stalled:
                continue
            for start in range(0, len(batch), size):
                try:
                    sent = await self._send_frame(client, batch[start : start + size])
                except ConnectionClosed:
                    sent = False
                if not sent:
                    scope.cancel()
                    return

    async def _send_frame(self, client: _Client, messages: list[Any]) -> bool:
        """Send one data frame with the faults due; False once the connection is dropped."""
        chaos = self.chaos
        settings = chaos.settings
        if settings.delay > 0:
            await anyio.sleep(settings.delay)
        for fault, every in (
            ("garbage", settings.garbage_every),
            ("oversized", settings.oversized_every),
            ("malformed", settings.malformed_every),
            ("broken", settings.broken_every),
        ):
            if chaos.every(every, client.frames + 1):
                client.frames += 1
                if fault == "malformed":
                    await self._send_malformed(client, messages[0])
                    continue
                if fault == "broken":
                    if self._send_broken(client):
                        return False  # that connection is over
                    continue
                chaos.count(fault)
                await client.send_frame(
                    _fault_frame(fault, client.encoding, settings.oversized_bytes)
                )
        client.frames += 1
        await client.send(messages)
        before, client.sent = client.sent, client.sent + len(messages)
        if (
            settings.drop_every
            and client.sent // settings.drop_every > before // settings.drop_every
        ) or any(chaos.chance(settings.drop_probability) for _ in messages):
            chaos.count("drop")
            client.websocket.transport.abort()
            return False
        if settings.stall_after and client.sent >= settings.stall_after:
            chaos.count("stall")
            client.stalled = True
            client.websocket.transport.pause_reading()  # pings go unanswered too: half-open
        return True

    async def _send_malformed(self, client: _Client, example: Any) -> None:
        """One frame of the next malformed kind (counted as ``malformed_<kind>``); an invalid
        UTF-8 one goes out as a text frame whatever the encoding (the library's ``send`` would
        encode a str, so it is written through the protocol)."""
        kinds = self.chaos.settings.malformed_kinds
        if not kinds:
            return
        kind = kinds[client.malformed % len(kinds)]
        client.malformed += 1
        symbol = getattr(example, "symbol", "AAPL")
        ts = getattr(example, "ts_event", self.market.now_ns())
        frame = _malformed_frame(kind, client.stream, client.encoding, symbol, ts)
        self.chaos.count(f"malformed_{kind}")
        if kind == "invalid_utf8":
            websocket = client.websocket
            async with websocket.send_context():
                websocket.protocol.send_text(frame)
        else:
            await client.send_frame(frame)

    def _send_broken(self, client: _Client) -> bool:
        """Write one frame of the next protocol-breaking kind (counted as ``broken_<kind>``)
        straight onto the transport, past the library, which would never write it; True when
        one went out: the connection is then over (the client closes it, or the stream ends)."""
        kinds = self.chaos.settings.broken_kinds
        if not kinds:
            return False
        kind = kinds[self._broken % len(kinds)]  # in turn across connections: each is the last
        self._broken += 1
        self.chaos.count(f"broken_{kind}")
        transport = client.websocket.transport
        transport.write(_BROKEN_FRAMES[kind])
        if kind == "truncated":
            transport.close()  # what was written is flushed, then the end of the stream
        return True

    # --- bar history (REST) -----------------------------------------------------------------

    def _rest(self, request: Request) -> Response:
        self.stats.rest_requests += 1
        self._rest_count += 1
        url = urllib.parse.urlsplit(request.path)
        asset = _BARS_ROUTES.get(url.path)
        if asset is None:
            return _json(404, {"message": "Not Found"})
        key = request.headers.get("APCA-API-KEY-ID")
        secret = request.headers.get("APCA-API-SECRET-KEY")
        if key is None or secret is None:
            return _json(401, {"message": "unauthorized."})
        if (key, secret) != (self.settings.key, self.settings.secret):
            return _json(403, {"message": "forbidden."})
        if self.chaos.refusing() or self.chaos.every(
            self.chaos.settings.http_error_every, self._rest_count
        ):
            self.chaos.count("http_error")
            return _json(500, {"message": "internal server error"})
        try:
            body = self._bars_page(asset, dict(urllib.parse.parse_qsl(url.query)))
        except ValueError as exc:
            return _json(422, {"message": str(exc)})
        return _response(200, body)

    def _bars_page(self, asset: str, params: dict[str, str]) -> bytes:
        symbols = [s for s in params.get("symbols", "").split(",") if s]
        if not symbols or not all(valid_symbol(s) for s in symbols):
            raise ValueError(f"invalid symbols: {params.get('symbols', '')!r}")
        if params.get("timeframe", "1Min") not in _MINUTE_TIMEFRAMES:
            raise ValueError(f"unsupported timeframe: {params['timeframe']!r} (only 1Min)")
        now = self.market.now_ns()
        start = _time(params["start"]) if "start" in params else now - now % NS_PER_DAY
        end = _time(params["end"]) if "end" in params else now
        limit = int(params.get("limit") or 1000)
        if not 1 <= limit <= 10_000:
            raise ValueError(f"invalid limit: {limit}")
        descending = params.get("sort", "asc") == "desc"
        position = _token(params["page_token"]) if params.get("page_token") else None
        page: list[Bar | CryptoBar] = []
        next_token: str | None = None
        for symbol in sorted(set(symbols)):
            if is_crypto(symbol) != (asset == "crypto"):
                continue
            if position is not None and symbol < position[0]:
                continue
            self.market.ensure(symbol)
            bars = self.market.bars(symbol, start, end)
            if descending:
                bars.reverse()
            if position is not None and symbol == position[0]:
                resume = position[1]
                bars = [
                    b
                    for b in bars
                    if (b.ts_event <= resume if descending else b.ts_event >= resume)
                ]
            for bar in bars:
                if len(page) == limit:
                    next_token = _encode_token(symbol, bar.ts_event)
                    break
                page.append(bar)
            if next_token is not None:
                break
        return encode_bars_page(page, next_token)


def _time(text: str) -> int:
    try:
        return parse_rfc3339_ns(text if "T" in text else f"{text}T00:00:00Z")
    except TimestampError as exc:
        raise ValueError(f"invalid time {text!r}: {exc}") from None


def _encode_token(symbol: str, ts: int) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([symbol, ts])).decode()


def _token(text: str) -> tuple[str, int]:
    try:
        symbol, ts = msgspec.json.decode(base64.urlsafe_b64decode(text), type=tuple[str, int])
    except (binascii.Error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"invalid page_token: {exc}") from None
    return symbol, ts


def _response(status: int, body: bytes) -> Response:
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, body)


def _json(status: int, body: Any) -> Response:
    return _response(status, msgspec.json.encode(body))
