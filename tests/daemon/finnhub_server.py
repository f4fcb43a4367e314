"""A minimal Finnhub websocket server on loopback for the feed tests. It speaks the real protocol
through the real codecs: the token is checked in the upgrade's query (HTTP 401 when wrong), each
client message is decoded and recorded, nothing is acknowledged, and a subscription past
``symbol_limit`` is answered with Finnhub's error. Each connection runs the next scripted
behaviour (send trades, pings or an error, close, say nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import anyio
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickd.codecs.finnhub import FinnhubRequest, decode_client_message, encode_trades
from tickd.codecs.schema import CryptoTrade, Trade

Behaviour = Callable[["Connection"], Awaitable[None]]
TOKEN = "test-token"
TOO_MANY = '{"type":"error","msg":"Subscribing to too many symbols"}'


class Connection:
    def __init__(self, server: MiniFinnhub, websocket: ServerConnection) -> None:
        self.server = server
        self.websocket = websocket
        self.received: list[FinnhubRequest] = []  # on this connection
        self.subscribed: set[str] = set()

    async def send_trades(self, trades: Sequence[Trade | CryptoTrade]) -> None:
        await self.websocket.send(encode_trades(trades).decode())

    async def send_raw(self, text: str) -> None:
        await self.websocket.send(text)

    async def received_at_least(self, count: int) -> list[FinnhubRequest]:
        """Wait until the client has sent ``count`` messages on this connection."""
        with anyio.fail_after(5):
            while len(self.received) < count:
                await anyio.sleep(0.005)
        return self.received

    async def listen(self) -> None:
        """Record every client message; refuse subscriptions past the server's limit."""
        limit = self.server.symbol_limit
        try:
            async for frame in self.websocket:
                request = decode_client_message(frame)
                assert isinstance(request, FinnhubRequest), request
                self.server.received.append(request)
                self.received.append(request)
                if request.type == "unsubscribe":
                    self.subscribed.discard(request.symbol)
                elif request.type == "subscribe":
                    if limit is not None and len(self.subscribed | {request.symbol}) > limit:
                        await self.websocket.send(TOO_MANY)
                    else:
                        self.subscribed.add(request.symbol)
        except ConnectionClosed:
            pass


class MiniFinnhub:
    def __init__(self, behaviours: list[Behaviour] | None = None) -> None:
        self.behaviours = list(behaviours or [])
        self.received: list[FinnhubRequest] = []  # on every connection
        self.tokens: list[str] = []  # the token of each upgrade request
        self.upgrades = 0  # upgrade requests, refused or not
        self.connections = 0  # connections that reached the handler
        self.http_status: list[int] = []  # refuse the next upgrades with these statuses
        self.symbol_limit: int | None = None
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MiniFinnhub]:
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._upgrade) as server:
            port = server.sockets[0].getsockname()[1]  # type: ignore[index]
            self.url = f"ws://127.0.0.1:{port}"
            yield self

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrades += 1
        tokens = parse_qs(urlsplit(request.path).query).get("token", [])
        self.tokens += tokens
        if self.http_status:
            status = self.http_status.pop(0)
            return connection.respond(status, f"HTTP {status}\n")
        if tokens != [TOKEN]:
            return connection.respond(401, "Invalid API key\n")
        return None

    async def _handler(self, websocket: ServerConnection) -> None:
        self.connections += 1
        connection = Connection(self, websocket)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(connection.listen)
            if self.behaviours:
                await self.behaviours.pop(0)(connection)
            await websocket.wait_closed()
